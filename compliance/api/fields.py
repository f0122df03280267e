"""The API's own serializer fields."""

from rest_framework import serializers


class ChoiceField(serializers.ChoiceField):
    """DRF's ChoiceField whose refusal names the values it takes: `"nope" is not a valid choice:
    choose one of expression, legal_obligation, …`. Every choice the API reads, in a body or a query
    string, is one of these."""

    default_error_messages = {"invalid_choice": '"{input}" is not a valid choice: choose one of {choices}'}

    def fail(self, key, **kwargs):
        if key == "invalid_choice":
            values = [value for value in self.choice_strings_to_values if value != ""]
            blank = self.allow_blank or "" in self.choice_strings_to_values
            kwargs["choices"] = ", ".join(values) + (" (or leave it empty)" if blank else "")
        super().fail(key, **kwargs)
