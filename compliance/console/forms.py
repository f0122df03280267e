"""The console's forms: each reads what one service takes (compliance.services), nothing more; the
service decides whether the step is allowed."""

from django import forms
from django.core.exceptions import ValidationError

from compliance.models import GROUNDS_BY_JURISDICTION, DenialGround, Jurisdiction, RequestStatus

NO_GROUND = ("", DenialGround.NONE.label)
# A near match's checkbox value: "<model>:<record id>" (a model's name is a slug: no colon).
RECORD_SEPARATOR = ":"


def text_area(rows: int = 3) -> forms.Textarea:
    return forms.Textarea(attrs={"rows": rows})


class ConsoleForm(forms.Form):
    """A form with ids of its own (`<id_prefix>-<field>`): a page holds several forms whose fields
    share names (reason), and each label must point at its own input."""

    id_prefix = "console"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", f"{self.id_prefix}-%s")
        super().__init__(*args, **kwargs)


class QueueSearchForm(ConsoleForm):
    id_prefix = "search"
    q = forms.CharField(label="Reference or e-mail", required=False, max_length=254)
    status = forms.ChoiceField(label="Status", required=False, choices=[("", "Any")] + RequestStatus.choices)
    show = forms.ChoiceField(label="Requests", required=False, choices=[("open", "Open"), ("closed", "Closed")])


class UUIDListField(forms.Field):
    """The ids of the requests ticked in the queue (several inputs of one name)."""

    widget = forms.MultipleHiddenInput
    default_error_messages = {"required": "tick at least one request", "invalid": "not a request id: %(value)s"}

    def to_python(self, value) -> list[str]:
        ids = []
        for item in value or []:
            try:
                ids.append(str(forms.UUIDField().to_python(item)))
            except ValidationError:
                raise ValidationError(self.error_messages["invalid"], code="invalid", params={"value": item}) from None
        return ids


class BulkDecisionForm(ConsoleForm):
    id_prefix = "bulk"
    request_ids = UUIDListField()
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    reason = forms.CharField(label="Reason (a denial's, which the owners read; an approval's note)", required=False,
                             max_length=4000, widget=text_area())
    ground = forms.ChoiceField(label="Exception cited by a denial", required=False,
                               choices=[NO_GROUND] + [(label, [(g.value, g.label) for g in grounds])
                                                      for label, grounds in (
                                                          ("GDPR Art. 17(3)", GROUNDS_BY_JURISDICTION[Jurisdiction.GDPR]),
                                                          ("CCPA 1798.105(d)", GROUNDS_BY_JURISDICTION[Jurisdiction.CCPA]))],
                               help_text="a ground of the other jurisdiction fails that request (listed with the reason)")


class ApproveForm(ConsoleForm):
    id_prefix = "approve"
    note = forms.CharField(label="Note (kept with the decision)", required=False, max_length=2000, widget=text_area())
    include_records = forms.MultipleChoiceField(label="Near matches to forget too", required=False,
                                                widget=forms.CheckboxSelectMultiple)
    forget_material = forms.BooleanField(label="Also forget the material the owner handed in", required=False)

    def __init__(self, *args, review: list[dict], **kwargs):
        """`review`: compliance.selectors.pending_forget_review of the request (its near matches are the choices)."""
        super().__init__(*args, **kwargs)
        self.fields["include_records"].choices = [
            (f"{model['model']}{RECORD_SEPARATOR}{match['record_id']}", match["record_id"])
            for model in review for match in model["near_matches"]]

    @staticmethod
    def initial_from(first_approval: dict) -> dict:
        """The scope a first reviewer approved, for the second to confirm unchanged."""
        return {"include_records": [f"{model}{RECORD_SEPARATOR}{record}" for model, records in
                                    first_approval.get("include_records", {}).items() for record in records],
                "forget_material": first_approval.get("forget_material", False)}

    def clean_include_records(self) -> dict[str, list[str]]:
        by_model: dict[str, list[str]] = {}
        for value in self.cleaned_data["include_records"]:
            model, _, record = value.partition(RECORD_SEPARATOR)
            by_model.setdefault(model, []).append(record)
        return by_model


class DenyForm(ConsoleForm):
    id_prefix = "deny"
    reason = forms.CharField(label="Reason (the owner reads it)", max_length=4000, widget=text_area())
    ground = forms.ChoiceField(label="Exception cited", required=False)

    def __init__(self, *args, jurisdiction: str, **kwargs):
        super().__init__(*args, **kwargs)
        ground = self.fields["ground"]
        ground.choices = [NO_GROUND] + [(g, DenialGround(g).label) for g in GROUNDS_BY_JURISDICTION[jurisdiction]]
        ground.error_messages["invalid_choice"] = (
            f"%(value)s is not an exception under {Jurisdiction(jurisdiction).label}: choose one of those listed")


class HoldForm(ConsoleForm):
    id_prefix = "hold"
    reason = forms.CharField(label="Why the request waits", max_length=4000, widget=text_area(2))


class ResumeForm(ConsoleForm):
    id_prefix = "resume"


class AskOwnerForm(ConsoleForm):
    id_prefix = "ask"
    question = forms.CharField(label="Question to the owner (e-mailed to them)", max_length=4000, widget=text_area())


class ExtendForm(ConsoleForm):
    id_prefix = "extend"
    reason = forms.CharField(label="Why more time is needed (e-mailed to the owner)", max_length=4000,
                             widget=text_area())


class NoteForm(ConsoleForm):
    id_prefix = "note"
    text = forms.CharField(label="Internal note (never shown to the owner)", max_length=10000, widget=text_area())
