"""The data owner's pages in a real browser (Debian's headless Chromium, driven by Selenium): filing
and confirming a request, following it live while a worker process does the work, downloading the
certificate; the answer for a person in no model; every page at a phone's width. Screenshots of each
step are kept (tests/browser/conftest.py says where).

The test with a worker comes first: once tasks have run eagerly in this process, its Celery app no
longer reaches a worker's control channel (the Makefile runs `-m integration` first, alone)."""

import re
import time
import urllib.request

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from compliance import selectors
from compliance.models import RemovalRequest, RequestStatus
from tests.browser.conftest import WAIT_SECONDS, chromium, sign_in_to_console, wait_for_url
from tests.conftest import CODE_PATTERN, governed_rows, one_torch_thread
from tests.integration.test_pipeline_worker import PIPELINE_TIMEOUT_SECONDS, celery_worker
from unlearning.models import ModelAsset, TrainingRecord

WORK_UNDER_WAY = {RequestStatus.APPROVED, RequestStatus.SCHEDULED, RequestStatus.UNLEARNING, RequestStatus.AUDITING}


def file_a_request(browser, live_server, mailoutbox, screenshot, *, full_name: str, email: str) -> RemovalRequest:
    """The owner files a request on the home page and confirms it with the code from the e-mail;
    returns it, the browser on its page."""
    browser.get(live_server.url + "/")
    browser.find_element(By.NAME, "full_name").send_keys(full_name)
    browser.find_element(By.NAME, "email").send_keys(email)
    browser.find_element(By.NAME, "description").send_keys("Everything you hold about me.")
    browser.find_element(By.NAME, "confirm").click()
    screenshot(browser, "request-form")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for_url(browser, "/verify/")
    request = RemovalRequest.objects.get(email=email)
    browser.find_element(By.NAME, "code").send_keys(re.search(CODE_PATTERN, mailoutbox[-1].body).group(1))
    screenshot(browser, "code")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for_url(browser, f"/requests/{request.pk}/")
    assert browser.current_url == f"{live_server.url}/requests/{request.pk}/"
    assert browser.find_element(By.ID, "status").text == RequestStatus.IDENTITY_VERIFIED.label
    screenshot(browser, "in-review")
    return request


def approve_in_the_console(reviewer_browser, live_server, reviewer, request, screenshot) -> None:
    """A reviewer signs in to the console, finds the request in the queue, opens it and approves it."""
    sign_in_to_console(reviewer_browser, live_server, reviewer)
    screenshot(reviewer_browser, "console-queue")
    reviewer_browser.find_element(By.LINK_TEXT, request.reference).click()
    wait_for_url(reviewer_browser, f"/console/requests/{request.pk}/")
    assert RequestStatus.IDENTITY_VERIFIED.label in reviewer_browser.find_element(By.CSS_SELECTOR, "h1 .status").text
    screenshot(reviewer_browser, "console-request")
    reviewer_browser.find_element(By.CSS_SELECTOR, "form#approve button[type=submit]").click()
    WebDriverWait(reviewer_browser, WAIT_SECONDS).until(
        lambda driver: f"{request.reference} is approved" in driver.find_element(By.TAG_NAME, "main").text)
    screenshot(reviewer_browser, "console-approved")


def certificate_response(browser, href: str):
    """GET the certificate's link with the browser's session cookie (Selenium cannot read a download)."""
    cookie = browser.get_cookie(django_settings.SESSION_COOKIE_NAME)
    with urllib.request.urlopen(urllib.request.Request(href, headers={"Cookie": f"{cookie['name']}={cookie['value']}"}),
                                timeout=30) as response:
        return response.headers, response.read()


def live_part(browser):
    """(status, text) of the page's live part while the page loaded before is still shown (its
    `__loadedAt` marker there); None once the page has reloaded itself."""
    try:
        return browser.execute_script(
            "if (window.__loadedAt === undefined) { return null; }"
            "var live = document.querySelector('#live .live');"
            "return [live.dataset.status, document.getElementById('live').innerText.trim()];")
    except WebDriverException:  # caught mid-reload
        return ["", ""]


@pytest.mark.integration
@pytest.mark.browser
def test_an_owner_follows_the_work_live_while_a_worker_certifies_it_and_downloads_the_certificate(
        browser, live_server, tmp_path, settings, audit_log_reset_allowed, mailoutbox, reviewer, screenshot):
    """The cheapest governed model that runs every step on a worker: a digits classifier of small
    SISA MLPs, whose exact deletion retrains one shard, audited against a model retrained without
    the row (the same shard again), then signed."""
    with celery_worker(tmp_path, settings) as log:
        with one_torch_thread():
            call_command("train_tabular_model", name="digits-sisa", dataset="digits", shards=3, slices=2, epochs=10,
                         hidden=32)
        owner_key = TrainingRecord.objects.filter(asset=ModelAsset.objects.get()).order_by("record_id")[0].owner_key
        request = file_a_request(browser, live_server, mailoutbox, screenshot, full_name="Row Owner", email=owner_key)
        browser.execute_script("window.__loadedAt = Date.now();")  # gone if the page is ever loaded again

        reviewer_browser = chromium(1200, 1600)
        try:
            approve_in_the_console(reviewer_browser, live_server, reviewer, request, screenshot)
        finally:
            reviewer_browser.quit()

        # The owner's page, never reloaded by the test, shows the work move on until it reloads itself once.
        seen, deadline = [], time.monotonic() + PIPELINE_TIMEOUT_SECONDS
        while (state := live_part(browser)) is not None:
            if state[0] and (not seen or state != seen[-1]):
                seen.append(state)
                if state[0] in WORK_UNDER_WAY:
                    screenshot(browser, f"progress-{state[0]}")
            assert time.monotonic() < deadline, f"still {seen[-1]}; worker log:\n{log.read_text()[-5000:]}"
            time.sleep(0.1)

    under_way = [text for status, text in seen if status in WORK_UNDER_WAY]
    assert seen[0][0] == RequestStatus.IDENTITY_VERIFIED
    assert len(set(under_way)) >= 2, seen  # the phase or its percent changed, shown without a reload
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda driver: driver.find_element(By.ID, "status").text == RequestStatus.CERTIFIED.label)
    request.refresh_from_db()
    assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}"
    assert browser.find_element(By.ID, "headline").text == selectors.request_result(request)["headline"] == \
        "Your data has been removed from our model, and tests confirm it is gone."
    link = browser.find_element(By.ID, "certificate-download")
    assert link.text == "Download your certificate (PDF)"
    screenshot(browser, "certified")
    headers, pdf = certificate_response(browser, link.get_attribute("href"))
    assert headers["Content-Type"] == "application/pdf" and pdf.startswith(b"%PDF-")
    assert request.certificate.serial in headers["Content-Disposition"]


@pytest.mark.browser
def test_an_owner_files_a_request_confirms_the_code_and_sees_its_status(browser, live_server, audit_log_reset_allowed,
                                                                      mailoutbox, screenshot):
    browser.get(live_server.url + "/")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()  # empty form: errors, not a crash
    assert browser.find_elements(By.CSS_SELECTOR, ".errorlist") and not RemovalRequest.objects.exists()
    screenshot(browser, "form-errors")

    browser.find_element(By.NAME, "full_name").send_keys("Alma Kestrel")
    browser.find_element(By.NAME, "email").send_keys("alma.kestrel@mail.example")
    browser.find_element(By.NAME, "description").send_keys("My biography and my employer.")
    browser.find_element(By.NAME, "confirm").click()
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for_url(browser, "/verify/")

    request = RemovalRequest.objects.get()
    assert browser.current_url.endswith(f"/requests/{request.pk}/verify/")
    assert request.reference in browser.find_element(By.TAG_NAME, "main").text

    code = re.search(CODE_PATTERN, mailoutbox[-1].body).group(1)
    browser.find_element(By.NAME, "code").send_keys("000000" if code != "000000" else "111111")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "not correct" in browser.find_element(By.CSS_SELECTOR, ".errorlist").text
    screenshot(browser, "wrong-code")

    browser.find_element(By.NAME, "code").clear()
    browser.find_element(By.NAME, "code").send_keys(code)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for_url(browser, f"/requests/{request.pk}/")
    assert browser.current_url == f"{live_server.url}/requests/{request.pk}/"
    assert browser.find_element(By.ID, "status").text == RequestStatus.IDENTITY_VERIFIED.label
    assert "confirmed" in browser.find_element(By.CSS_SELECTOR, ".messages").text
    assert RemovalRequest.objects.get().status == RequestStatus.IDENTITY_VERIFIED
    screenshot(browser, "request-status")


@pytest.mark.browser
def test_a_person_in_no_model_is_told_we_hold_no_data_and_gets_the_signed_statement(
        browser, live_server, store, audit_log_reset_allowed, mailoutbox, reviewer, screenshot):
    """Tasks run in this process here: the approval, in the live server, runs the whole pipeline
    (scheduling finds no model, the statement is signed) before it answers."""
    governed_rows(store, [{"record_id": "ticket-0001", "owner_key": "cy@mail.example", "kind": "ticket",
                           "text": "Ticket from Cy about the router."}])
    request = file_a_request(browser, live_server, mailoutbox, screenshot, full_name="Nobody Here",
                             email="nobody.here@mail.example")
    reviewer_browser = chromium(1200, 1600)
    try:
        approve_in_the_console(reviewer_browser, live_server, reviewer, request, screenshot)
    finally:
        reviewer_browser.quit()

    # The page polls, sees the request final and reloads itself with the outcome.
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda driver: driver.find_element(By.ID, "status").text == RequestStatus.NO_DATA.label)
    assert RequestStatus.NO_DATA.label == "Completed: we hold no data about you"
    assert browser.find_element(By.ID, "headline").text.startswith("We searched the training data of every model we govern")
    link = browser.find_element(By.ID, "certificate-download")
    assert link.text == "Download our signed statement (PDF)"
    assert not browser.find_elements(By.CSS_SELECTOR, ".phases")  # no work to show: none was done
    screenshot(browser, "no-data")
    headers, pdf = certificate_response(browser, link.get_attribute("href"))
    assert pdf.startswith(b"%PDF-") and RemovalRequest.objects.get().certificate.serial in headers["Content-Disposition"]
