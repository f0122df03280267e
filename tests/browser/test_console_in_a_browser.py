"""The legal team's review console in a real browser at a phone's width (approving from it on a
desk is in test_portal_in_a_browser.py, beside the owner watching), and its markup: every control
labelled, each status by the one name people read everywhere."""

import re

import pytest
from django.test import Client
from selenium.webdriver.common.by import By

from compliance.models import RequestStatus
from tests.browser.conftest import (
    FormControls,
    fits_a_phone,
    owners_client,
    sign_in_to_console,
    wait_for_url,
)


@pytest.mark.browser
def test_a_reviewer_signs_in_searches_and_reads_requests_on_a_phone(phone, live_server, requests_in_every_state,
                                                                      reviewer, screenshot):
    requests = requests_in_every_state

    phone.get(live_server.url + "/console/")
    fits_a_phone(phone, screenshot, "sign-in")
    sign_in_to_console(phone, live_server, reviewer)
    rows = {row.find_element(By.CSS_SELECTOR, "td a").text: row.text for row in
            phone.find_elements(By.CSS_SELECTOR, "tbody tr")}
    assert set(rows) == {requests[name].reference for name in ("submitted", "in_review", "running")}
    assert RequestStatus.UNLEARNING.label in rows[requests["running"].reference]
    fits_a_phone(phone, screenshot, "queue")

    phone.find_element(By.ID, "search-q").send_keys(requests["in_review"].email)
    phone.find_element(By.CSS_SELECTOR, "form[role=search] button[type=submit]").click()
    wait_for_url(phone, "q=bo.reader")
    assert [a.text for a in phone.find_elements(By.CSS_SELECTOR, "tbody td a")] == [requests["in_review"].reference]
    fits_a_phone(phone, screenshot, "queue-searched")
    phone.find_element(By.LINK_TEXT, requests["in_review"].reference).click()
    wait_for_url(phone, f"/console/requests/{requests['in_review'].pk}/")
    assert "note-0042" in phone.find_element(By.ID, "approve").text  # the near match, its long link with it
    fits_a_phone(phone, screenshot, "request-in-review")

    phone.find_element(By.LINK_TEXT, "Closed").click()
    wait_for_url(phone, "show=closed")
    closed = [a.text for a in phone.find_elements(By.CSS_SELECTOR, "tbody td a")]
    assert set(closed) == {requests["certified"].reference, requests["no_data"].reference}
    fits_a_phone(phone, screenshot, "closed")
    phone.find_element(By.LINK_TEXT, requests["certified"].reference).click()
    wait_for_url(phone, f"/console/requests/{requests['certified'].pk}/")
    fits_a_phone(phone, screenshot, "request-certified")


def test_every_control_of_the_console_has_a_label_and_each_status_has_one_name(requests_in_every_state, reviewer):
    """The Django test client, no browser. A status reads the same in the console's queue and request
    page as on the owner's page: its label (compliance.models.RequestStatus)."""
    requests = requests_in_every_state
    console = Client()
    console.force_login(reviewer)
    pages = {"queue": console.get("/console/"), "closed": console.get("/console/", {"show": "closed"}),
             **{name: console.get(f"/console/requests/{request.pk}/") for name, request in requests.items()}}
    for name, response in pages.items():
        assert response.status_code == 200, name
        controls = FormControls(response.content.decode())
        assert controls.controls and not controls.unlabelled() and not controls.missing_descriptions(), name

    owner = owners_client(*requests.values())
    for name, request in requests.items():
        label = RequestStatus(request.status).label
        badge = re.search(r'<h1>Request [^<]* <span class="status">([^<]*)</span>', pages[name].content.decode())
        assert badge.group(1) == label, name
        queue = pages["closed" if name in ("certified", "no_data") else "queue"].content.decode()
        assert re.search(rf'{request.reference}</a></td>\s*<td>{re.escape(label)}</td>', queue), name
        if name != "submitted":  # its owner has not proven the address yet: no page of theirs
            portal = owner.get(f"/requests/{request.pk}/").content.decode()
            assert re.search(r'id="status">([^<]*)<', portal).group(1) == label, name
