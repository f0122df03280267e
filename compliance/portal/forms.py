from django import forms

from compliance.models import Jurisdiction


class RemovalRequestForm(forms.Form):
    full_name = forms.CharField(label="Your full name", max_length=200)
    email = forms.EmailField(label="Your e-mail address", help_text="We send a one-time code here to confirm it is you.")
    description = forms.CharField(
        label="What should our models forget about you?", widget=forms.Textarea(attrs={"rows": 4}), max_length=5000,
        help_text="For example: my biography, my employer, my contact details.",
    )
    jurisdiction = forms.ChoiceField(label="Law you rely on", choices=Jurisdiction.choices, initial=Jurisdiction.GDPR)
    confirm = forms.BooleanField(label="I confirm that this request is about me.")


class CodeForm(forms.Form):
    code = forms.RegexField(label="Six-digit code", regex=r"^\s*\d{6}\s*$", max_length=12,
                            error_messages={"invalid": "Enter the six digits from the e-mail."})


class AccessForm(forms.Form):
    reference = forms.CharField(label="Request reference", max_length=16, help_text="It looks like RR-AB12CD34.")
    email = forms.EmailField(label="E-mail address on the request")
