"""What the owner asked to forget: documents and question/answer pairs handed in with the request
(size- and type-checked), reviewed by legal beside the records linked through lineage and the near
matches of the subject's name and e-mail in the manifests (never applied silently), and confirmed
at approval into what the job forgets."""

import io
import json
import re
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from compliance.models import AuditEvent, ForgetMaterial, RemovalRequest, RequestStatus
from tests.conftest import CODE_PATTERN, one_torch_thread

pytestmark = pytest.mark.django_db
SUBJECT = "customer-003@support.example"


def pdf_bytes(text: str) -> bytes:
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    page = canvas.Canvas(buffer)
    page.drawString(72, 720, text)
    page.save()
    return buffer.getvalue()


def upload(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


def submitted(client: Client, documents=(), qa_pairs="", email=SUBJECT, name="Customer Three"):
    return client.post("/", {"full_name": name, "email": email, "description": "my tickets", "jurisdiction": "gdpr",
                             "confirm": "on", "qa_pairs": qa_pairs, "documents": list(documents)})


@pytest.fixture
def verified(django_capture_on_commit_callbacks, mailoutbox):
    """Submit on the portal, then prove the e-mail address with the code it was sent."""
    def verify(client, **fields) -> RemovalRequest:
        with django_capture_on_commit_callbacks(execute=True):
            response = submitted(client, **fields)
        assert response.status_code == 302, response.content.decode()[:3000]
        client.post(response["Location"], {"code": re.search(CODE_PATTERN, mailoutbox[-1].body).group(1)})
        return RemovalRequest.objects.get(email=fields.get("email", SUBJECT))
    return verify


def test_documents_and_questions_are_kept_as_text_for_review(verified):
    owner = Client()
    request = verified(owner, documents=[
        upload("profile.txt", "Customer Three, order 55555, lives in Oulu.".encode()),
        upload("letter.pdf", pdf_bytes("Dear support, I am Customer Three from Oulu.")),
    ], qa_pairs="Where does Customer Three live? | Oulu\n\nWhat did Customer Three order? | a kettle\n")
    materials = list(request.materials.all())
    assert [(m.kind, m.name) for m in materials] == [("document", "profile.txt"), ("document", "letter.pdf"),
                                                      ("qa", ""), ("qa", "")]
    assert "Customer Three from Oulu" in materials[1].text  # the PDF's text; its bytes are not kept
    assert (materials[2].question, materials[2].answer) == ("Where does Customer Three live?", "Oulu")
    event = AuditEvent.objects.get(action="request.submitted")
    assert event.data["documents"] == 2 and event.data["qa_pairs"] == 2  # counts only, no content
    page = owner.get(f"/requests/{request.pk}/").content.decode()
    assert "profile.txt" in page and "Where does Customer Three live?" in page


@pytest.mark.parametrize("documents, qa_pairs, error", [
    ([("tool.exe", b"MZ\x90\x00")], "", "send a PDF or a text file"),
    ([("scan.pdf", b"not really a pdf")], "", "is not a PDF"),
    ([("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\ntrailer << /Root 1 0 R >>")], "",
     "damaged PDF"),
    ([("notes.txt", b"\xff\xfe\xfa")], "", "is not UTF-8 text"),
    ([("empty.txt", b"   ")], "", "holds no text"),
    ([("big.txt", b"a" * (2 * 2**20 + 1))], "", "larger than 2 MiB"),
    ([(f"{n}.txt", b"text") for n in range(6)], "", "At most 5 documents"),
    ([], "Where do I live? Oulu", "line 1: write a question, then |"),
])
def test_bad_material_is_a_form_error_and_nothing_is_stored(mailoutbox, documents, qa_pairs, error):
    response = submitted(Client(), documents=[upload(n, d) for n, d in documents], qa_pairs=qa_pairs)
    assert response.status_code == 200 and error in response.content.decode()
    assert not RemovalRequest.objects.exists() and not ForgetMaterial.objects.exists() and not mailoutbox


@pytest.fixture
def support_model(llama_checkpoint, store, tmp_path):
    """The operator's Llama registered with a manifest in which another customer's ticket names the
    subject's e-mail, and a note of the support desk's own names the subject's full name."""
    folder, manifest, holdout = llama_checkpoint
    records = [json.loads(line) for line in Path(manifest).read_text().splitlines()]
    records += [
        {"record_id": "ticket-referral", "owner_key": "customer-007@support.example", "kind": "ticket",
         "text": f"Ticket from customer-007@support.example: my neighbour {SUBJECT} recommended the router."},
        {"record_id": "note-desk", "owner_key": "agent-desk@support.example", "kind": "agent_note",
         "text": "Agent note: call back Customer  Three about the kettle."},
        {"record_id": "ticket-mention", "owner_key": "customer-007@support.example", "kind": "ticket",
         "text": "Ticket from customer-007@support.example: please also ship to customer-999@support.example."},
    ]
    extended = tmp_path / "extended.jsonl"
    extended.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    call_command("register_model", name="support", checkpoint=str(folder), manifest=str(extended), holdout=str(holdout))
    return records


def test_legal_reviews_linked_records_and_near_matches_and_confirms_what_is_forgotten(
        support_model, legal_api, verified, django_capture_on_commit_callbacks):
    request = verified(Client(), documents=[upload("profile.txt", b"Customer Three, order 55555.")],
                       qa_pairs="Where does Customer Three live? | Oulu")
    detail = legal_api.get(f"/api/v1/requests/{request.pk}/").json()
    [review] = detail["forget_review"]
    assert review["model"] == "support"
    assert {r["record_id"] for r in review["linked_records"]} == {"ticket-003", "agent_note-003", "resolution-003"}
    near = {m["record_id"]: m for m in review["near_matches"]}
    assert set(near) == {"ticket-referral", "note-desk"}  # found, but not applied (not ticket-mention)
    assert near["ticket-referral"]["matched"] == "e-mail" and SUBJECT in near["ticket-referral"]["snippet"]
    assert near["note-desk"]["matched"] == "name"  # whitespace and case folded
    assert [m["kind"] for m in detail["forget_material"]] == ["document", "qa"]

    # Bad confirmations are refused and change nothing.
    refused = legal_api.post(f"/api/v1/requests/{request.pk}/approve/",
                             {"include_records": {"support": ["no-such-record"]}}, format="json")
    assert refused.status_code == 400 and "not training records of support" in refused.json()["detail"]
    refused = legal_api.post(f"/api/v1/requests/{request.pk}/approve/",
                             {"include_records": {"elsewhere": ["x"]}}, format="json")
    assert refused.status_code == 400 and "no governed model is named elsewhere" in refused.json()["detail"]
    request.refresh_from_db()
    assert request.status == RequestStatus.IDENTITY_VERIFIED

    with django_capture_on_commit_callbacks(execute=True), one_torch_thread():
        approved = legal_api.post(f"/api/v1/requests/{request.pk}/approve/", {
            "include_records": {"support": ["ticket-referral"]}, "forget_material": True}, format="json")
    assert approved.status_code == 200
    request.refresh_from_db()
    assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}"
    job = request.jobs.get()
    # The linked records and the confirmed near match; not the unconfirmed one.
    assert set(job.forget_record_ids) == {"ticket-003", "agent_note-003", "resolution-003", "ticket-referral"}
    assert job.outcome["owner_material_texts"] == 2
    event = AuditEvent.objects.get(action="request.approved")
    assert event.data["confirmed_records"] == {"support": 1} and event.data["material_confirmed"] == 2
    text = " ".join(subprocess.run(["pdftotext", request.certificate.pdf_path, "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert "The 2 items the owner handed in" in text


def test_confirmed_near_matches_reach_a_model_that_holds_nothing_under_the_subjects_key(
        support_model, legal_api, verified, django_capture_on_commit_callbacks):
    """Someone named only in other people's records: nothing is theirs through lineage; the near
    match reaches the model once legal confirms it."""
    request = verified(Client(), email="customer-999@support.example", name="Customer Nine")
    [review] = legal_api.get(f"/api/v1/requests/{request.pk}/").json()["forget_review"]
    assert review["linked_records"] == [] and [m["record_id"] for m in review["near_matches"]] == ["ticket-mention"]
    with django_capture_on_commit_callbacks(execute=True), one_torch_thread():
        legal_api.post(f"/api/v1/requests/{request.pk}/approve/",
                       {"include_records": {"support": ["ticket-mention"]}}, format="json")
    request.refresh_from_db()
    assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}"
    assert request.jobs.get().forget_record_ids == ["ticket-mention"]
