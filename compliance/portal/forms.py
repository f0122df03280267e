from django import forms

from compliance import materials
from compliance.models import Jurisdiction


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class DocumentsField(forms.FileField):
    """Several files in one input; each is read and checked by compliance.materials."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ",".join((materials.PDF_SUFFIX,
                                                                                  *materials.TEXT_SUFFIXES))}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = [f for f in (data if isinstance(data, (list, tuple)) else [data]) if f]
        try:
            materials.check_uploads([(uploaded.name, uploaded.size) for uploaded in files])  # before reading any
            return [materials.read_document(uploaded.name, uploaded.read()) for uploaded in files]
        except materials.MaterialRejected as error:
            raise forms.ValidationError(error.detail) from None


class RemovalRequestForm(forms.Form):
    full_name = forms.CharField(label="Your full name", max_length=200)
    email = forms.EmailField(label="Your e-mail address", help_text="We send a one-time code here to confirm it is you.")
    description = forms.CharField(
        label="What should our models forget about you?", widget=forms.Textarea(attrs={"rows": 4}), max_length=5000,
        help_text="For example: my biography, my employer, my contact details.",
    )
    documents = DocumentsField(
        label="Documents about you (optional)", required=False,
        help_text="Texts you know or suspect our models learned from, e.g. a profile or an old post: PDF or text "
                  "files, up to 5, 2 MiB each. Our reviewers read them; only their text is kept.")
    qa_pairs = forms.CharField(
        label="Questions a model should no longer answer about you (optional)", required=False, max_length=20000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Where does Jane Doe work? | Acme Ltd"}),
        help_text="One per line: the question, a | sign, then the answer you do not want it to give.")
    jurisdiction = forms.ChoiceField(label="Law you rely on", choices=Jurisdiction.choices, initial=Jurisdiction.GDPR)
    confirm = forms.BooleanField(label="I confirm that this request is about me.")

    def clean_qa_pairs(self):
        try:
            return materials.parse_qa_pairs(self.cleaned_data["qa_pairs"])
        except materials.MaterialRejected as error:
            raise forms.ValidationError(error.detail) from None


class CodeForm(forms.Form):
    # inputmode: a phone shows its number pad; one-time-code: it offers the code from the e-mail or SMS.
    code = forms.RegexField(label="Six-digit code", regex=r"^\s*\d{6}\s*$", max_length=12,
                            widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "one-time-code",
                                                          "pattern": "\\s*[0-9]{6}\\s*", "spellcheck": "false"}),
                            error_messages={"invalid": "Enter the six digits from the e-mail."})


class AnswerForm(forms.Form):
    answer = forms.CharField(label="Your answer", max_length=5000, widget=forms.Textarea(attrs={"rows": 4}),
                             help_text="Our legal team reads it; your request continues once they have it.")


class AccessForm(forms.Form):
    reference = forms.CharField(label="Request reference", max_length=16, help_text="It looks like RR-AB12CD34.")
    email = forms.EmailField(label="E-mail address on the request")
