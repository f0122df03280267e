"""The data owner's portal: form errors that store nothing, code verification, and privacy between owners."""

import re

import pytest
from django.test import Client

from compliance.models import RemovalRequest, RequestStatus

pytestmark = pytest.mark.django_db
FORM = {"full_name": "Alma Kestrel", "email": "alma.kestrel@mail.example", "description": "my biography",
        "jurisdiction": "gdpr", "confirm": "on"}


def file_request(client, mailoutbox, django_capture_on_commit_callbacks, **changes):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/", {**FORM, **changes})
    assert response.status_code == 302
    code = re.search(r"\b(\d{6})\b", mailoutbox[-1].body).group(1)
    return response["Location"], code


def test_missing_fields_show_form_errors_and_store_nothing():
    response = Client().post("/", {"full_name": "", "email": "not-an-email", "description": "x", "jurisdiction": "mars"})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) == {"full_name", "email", "jurisdiction", "confirm"}
    assert RemovalRequest.objects.count() == 0


def test_an_owner_files_verifies_and_follows_their_request(mailoutbox, django_capture_on_commit_callbacks):
    owner = Client()
    verify_url, code = file_request(owner, mailoutbox, django_capture_on_commit_callbacks)
    request = RemovalRequest.objects.get()
    assert verify_url == f"/requests/{request.pk}/verify/" and request.reference in owner.get(verify_url).content.decode()

    wrong = owner.post(verify_url, {"code": "000000" if code != "000000" else "111111"})
    assert wrong.status_code == 200 and "not correct" in wrong.content.decode()
    assert owner.post(verify_url, {"code": "12ab"}).context["form"].errors["code"]

    response = owner.post(verify_url, {"code": code}, follow=True)
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == f"/requests/{request.pk}/"
    assert request.reference in page and RequestStatus.IDENTITY_VERIFIED.label in page
    assert RemovalRequest.objects.get().status == RequestStatus.IDENTITY_VERIFIED


def test_one_owner_cannot_see_or_download_another_owners_request(mailoutbox, django_capture_on_commit_callbacks):
    alma, bram = Client(), Client()
    verify_url, code = file_request(alma, mailoutbox, django_capture_on_commit_callbacks)
    alma.post(verify_url, {"code": code})
    file_request(bram, mailoutbox, django_capture_on_commit_callbacks, email="bram@mail.example", full_name="Bram")
    request = RemovalRequest.objects.get(email="alma.kestrel@mail.example")
    assert alma.get(f"/requests/{request.pk}/").status_code == 200
    assert bram.get(f"/requests/{request.pk}/").status_code == 404
    assert bram.get(f"/requests/{request.pk}/certificate.pdf").status_code == 404
    assert bram.post(f"/requests/{request.pk}/cancel/").status_code == 404
    assert RemovalRequest.objects.get(pk=request.pk).status == RequestStatus.IDENTITY_VERIFIED


def test_an_owner_signs_back_in_with_reference_email_and_a_fresh_code(mailoutbox, django_capture_on_commit_callbacks):
    verify_url, code = file_request(Client(), mailoutbox, django_capture_on_commit_callbacks)
    request = RemovalRequest.objects.get()
    later = Client()
    assert later.get(f"/requests/{request.pk}/").status_code == 404
    miss = later.post("/access/", {"reference": request.reference, "email": "someone.else@mail.example"})
    assert "No request matches" in miss.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = later.post("/access/", {"reference": request.reference.lower(), "email": request.email})
    assert response["Location"] == verify_url
    fresh = re.search(r"\b(\d{6})\b", mailoutbox[-1].body).group(1)
    later.post(verify_url, {"code": fresh})
    assert later.get(f"/requests/{request.pk}/").status_code == 200


def test_the_owner_can_cancel_before_approval(mailoutbox, django_capture_on_commit_callbacks):
    owner = Client()
    verify_url, code = file_request(owner, mailoutbox, django_capture_on_commit_callbacks)
    owner.post(verify_url, {"code": code})
    request = RemovalRequest.objects.get()
    page = owner.post(f"/requests/{request.pk}/cancel/", follow=True).content.decode()
    assert "canceled" in page.lower() and RemovalRequest.objects.get().status == RequestStatus.CANCELED
