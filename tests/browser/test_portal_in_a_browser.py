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
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from compliance import selectors
from compliance.models import RemovalRequest, RequestStatus
from tests.browser.conftest import (
    ROOT,
    FormControls,
    chromium,
    fits_a_phone,
    owners_browser,
    owners_client,
    sign_in_to_console,
    text_of,
    wait_for_text,
    wait_for_url,
)
from tests.conftest import CODE_PATTERN, governed_rows, one_torch_thread
from tests.integration.test_pipeline_worker import PIPELINE_TIMEOUT_SECONDS, celery_worker
from unlearning.models import ModelAsset, TrainingRecord


def file_a_request(browser, live_server, mailoutbox, screenshot, *, full_name: str, email: str) -> RemovalRequest:
    """The owner files a request on the home page and confirms it with the code from the e-mail;
    returns it, the browser on its page."""
    browser.get(live_server.url + "/")
    browser.find_element(By.NAME, "full_name").send_keys(full_name)
    browser.find_element(By.NAME, "email").send_keys(email)
    browser.find_element(By.NAME, "description").send_keys("Everything you hold about me.")
    browser.find_element(By.NAME, "confirm").click()
    screenshot(browser, "request-form")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait_for_url(browser, "/verify/")
    request = RemovalRequest.objects.get(email=email)
    browser.find_element(By.NAME, "code").send_keys(re.search(CODE_PATTERN, mailoutbox[-1].body).group(1))
    screenshot(browser, "code")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait_for_url(browser, f"{live_server.url}/requests/{request.pk}/")
    assert text_of(browser, "#status") == RequestStatus.IDENTITY_VERIFIED.label
    screenshot(browser, "in-review")
    return request


# Where tasks run eagerly, the approval answers once the pipeline has run (for no data: signing a statement).
APPROVAL_SECONDS = 120


def approve_in_the_console(reviewer_browser, live_server, reviewer, request, screenshot) -> None:
    """A reviewer signs in to the console, finds the request in the queue, opens it and approves it."""
    sign_in_to_console(reviewer_browser, live_server, reviewer)
    screenshot(reviewer_browser, "console-queue")
    reviewer_browser.find_element(By.LINK_TEXT, request.reference).click()
    wait_for_url(reviewer_browser, f"/console/requests/{request.pk}/")
    assert RequestStatus.IDENTITY_VERIFIED.label in reviewer_browser.find_element(By.CSS_SELECTOR, "h1 .status").text
    screenshot(reviewer_browser, "console-request")
    reviewer_browser.find_element(By.CSS_SELECTOR, "form#approve button[type=submit]").click()
    wait_for_text(reviewer_browser, ".messages", f"{request.reference} is approved", APPROVAL_SECONDS)
    screenshot(reviewer_browser, "console-approved")


def certificate_response(browser, href: str):
    """GET the certificate's link with the browser's session cookie (Selenium cannot read a download)."""
    cookie = browser.get_cookie(django_settings.SESSION_COOKIE_NAME)
    with urllib.request.urlopen(urllib.request.Request(href, headers={"Cookie": f"{cookie['name']}={cookie['value']}"}),
                                timeout=30) as response:
        return response.headers, response.read()


def live_part(browser):
    """[status, text, headlines above it, headlines in it] of the page's live part, while the page
    loaded before is still shown (its `__loadedAt` marker there); None once it has reloaded itself."""
    try:
        return browser.execute_script(
            "if (window.__loadedAt === undefined) { return null; }"
            "var live = document.querySelector('#live .live');"
            "var headlines = [...document.querySelectorAll('.headline')];"
            "return [live.dataset.status, document.getElementById('live').innerText.trim(),"
            "        headlines.filter(h => !live.contains(h)).length, headlines.filter(h => live.contains(h)).length];")
    except WebDriverException:  # caught mid-reload
        return ["", "", 0, 0]


@pytest.mark.integration
@pytest.mark.browser
def test_an_owner_follows_the_work_live_while_a_worker_certifies_it_and_downloads_the_certificate(
        browser, live_server, tmp_path, settings, audit_log_reset_allowed, mailoutbox, reviewer, screenshot):
    """The cheapest governed model that runs every step on a worker: scikit-learn's digits as two
    SISA shards of small MLPs; its exact deletion retrains one shard, the audit compares it with a
    model retrained without the row, then the certificate is signed. Trained long enough (600
    epochs) that unlearning and the audit each take about 4 s on two cores, and signing 3 s: longer
    than the page's 3 s between polls, so it shows each step as it comes (about 40 s in all)."""
    with celery_worker(tmp_path, settings) as log:
        with one_torch_thread():
            call_command("train_tabular_model", name="digits-sisa", dataset="digits", shards=2, slices=1, epochs=600,
                         hidden=64)
        owner_key = TrainingRecord.objects.filter(asset=ModelAsset.objects.get()).order_by("record_id")[0].owner_key
        request = file_a_request(browser, live_server, mailoutbox, screenshot, full_name="Row Owner", email=owner_key)
        browser.execute_script("window.__loadedAt = Date.now();")  # gone if the page is ever loaded again
        seen = [live_part(browser)]

        reviewer_browser = chromium(1200, 1600)
        try:
            approve_in_the_console(reviewer_browser, live_server, reviewer, request, screenshot)
        finally:
            reviewer_browser.quit()

        # The owner's page, never reloaded by the test, shows the work move on until it reloads itself once.
        deadline = time.monotonic() + PIPELINE_TIMEOUT_SECONDS
        while (state := live_part(browser)) is not None:
            if state[0] and state != seen[-1]:
                seen.append(state)
                if state[0] in selectors.WORK_UNDER_WAY:
                    screenshot(browser, f"progress-{state[0]}")
            assert time.monotonic() < deadline, f"still {seen[-1]}; worker log:\n{log.read_text()[-5000:]}"
            time.sleep(0.1)

    request.refresh_from_db()
    assert request.status == RequestStatus.CERTIFIED, \
        f"{request.failed_step}: {request.failure_reason}\n{log.read_text()[-5000:]}"
    under_way = [text for status, text, *_ in seen if status in selectors.WORK_UNDER_WAY]
    assert seen[0][0] == RequestStatus.IDENTITY_VERIFIED
    assert len(set(under_way)) >= 2, seen  # the phase or its percent changed, shown without a reload
    # One sentence at the top at a time: the review's (above the live part) gives way to the work's (in it).
    assert {(status == RequestStatus.IDENTITY_VERIFIED, above, inside) for status, _, above, inside in seen} <= {
        (True, 1, 0), (False, 0, 1)}, seen
    wait_for_text(browser, "#status", lambda status: status == RequestStatus.CERTIFIED.label)
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
    ActionChains(browser).send_keys(Keys.TAB).perform()  # focus moved by the keyboard is outlined, visibly
    focused = browser.execute_script("var style = getComputedStyle(document.activeElement);"
                                     "return [document.activeElement.textContent, style.outlineStyle, style.outlineWidth];")
    assert focused == ["Forget-me portal", "solid", "3px"]
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()  # empty form: errors, not a crash
    assert browser.find_elements(By.CSS_SELECTOR, ".errorlist") and not RemovalRequest.objects.exists()
    screenshot(browser, "form-errors")

    browser.find_element(By.NAME, "full_name").send_keys("Alma Kestrel")
    browser.find_element(By.NAME, "email").send_keys("alma.kestrel@mail.example")
    browser.find_element(By.NAME, "description").send_keys("My biography and my employer.")
    browser.find_element(By.NAME, "confirm").click()
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait_for_url(browser, "/verify/")

    request = RemovalRequest.objects.get()
    assert browser.current_url.endswith(f"/requests/{request.pk}/verify/")
    assert request.reference in browser.find_element(By.TAG_NAME, "main").text

    code = re.search(CODE_PATTERN, mailoutbox[-1].body).group(1)
    browser.find_element(By.NAME, "code").send_keys("000000" if code != "000000" else "111111")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    assert "not correct" in browser.find_element(By.CSS_SELECTOR, ".errorlist").text
    screenshot(browser, "wrong-code")

    browser.find_element(By.NAME, "code").clear()
    browser.find_element(By.NAME, "code").send_keys(code)
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait_for_url(browser, f"{live_server.url}/requests/{request.pk}/")
    assert text_of(browser, "#status") == RequestStatus.IDENTITY_VERIFIED.label
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
    wait_for_text(browser, "#status", lambda status: status == RequestStatus.NO_DATA.label)
    assert RequestStatus.NO_DATA.label == "Completed: we hold no data about you"
    assert browser.find_element(By.ID, "headline").text.startswith("We searched the training data of every model we govern")
    link = browser.find_element(By.ID, "certificate-download")
    assert link.text == "Download our signed statement (PDF)"
    assert not browser.find_elements(By.CSS_SELECTOR, ".phases")  # no work to show: none was done
    screenshot(browser, "no-data")
    headers, pdf = certificate_response(browser, link.get_attribute("href"))
    assert pdf.startswith(b"%PDF-") and RemovalRequest.objects.get().certificate.serial in headers["Content-Disposition"]


@pytest.mark.browser
def test_every_page_of_the_portal_fits_a_phone(phone, live_server, requests_in_every_state, screenshot):
    """At 390 px nothing scrolls sideways, folded results unfolded: the forms with their errors, the
    request in each state, the public verify pages."""
    requests = requests_in_every_state
    owners_browser(phone, live_server, *(requests[name] for name in ("in_review", "running", "certified", "no_data")))

    phone.get(live_server.url + "/")
    phone.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    assert phone.find_elements(By.CSS_SELECTOR, ".errorlist")
    fits_a_phone(phone, screenshot, "home-with-errors")
    phone.get(live_server.url + "/access/")
    phone.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    assert phone.find_elements(By.CSS_SELECTOR, ".errorlist")
    fits_a_phone(phone, screenshot, "access-with-errors")
    phone.get(f"{live_server.url}/requests/{requests['submitted'].pk}/verify/")
    phone.find_element(By.NAME, "code").send_keys("12")
    phone.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    assert "six digits" in phone.find_element(By.CSS_SELECTOR, ".errorlist").text
    fits_a_phone(phone, screenshot, "code-with-error")
    for name, status in (("in_review", RequestStatus.IDENTITY_VERIFIED), ("running", RequestStatus.UNLEARNING),
                         ("certified", RequestStatus.CERTIFIED), ("no_data", RequestStatus.NO_DATA)):
        phone.get(f"{live_server.url}/requests/{requests[name].pk}/")
        assert text_of(phone, "#status") == status.label
        if name == "running":
            assert "40%" in text_of(phone, "#live")
        fits_a_phone(phone, screenshot, f"request-{name}")
    phone.get(live_server.url + "/verify/?serial=UC-NOT-A-SERIAL")
    assert phone.find_elements(By.CSS_SELECTOR, ".errorlist")
    fits_a_phone(phone, screenshot, "verify-landing-with-error")
    for name in ("certified", "no_data"):
        phone.get(f"{live_server.url}/verify/{requests[name].certificate.serial}/")
        fits_a_phone(phone, screenshot, f"verify-{name}")


def test_every_control_of_the_portal_and_the_verify_pages_has_a_label(requests_in_every_state):
    """The Django test client, no browser: each page's form controls have a name a screen reader reads,
    and the code field brings up a phone's number pad and offers the code from the e-mail."""
    requests = requests_in_every_state
    owner = owners_client(*requests.values())
    asked = requests["in_review"]
    RemovalRequest.objects.filter(pk=asked.pk).update(status=RequestStatus.INFO_REQUESTED, hold_reason="Which city?")
    pages = {
        "home with errors": owner.post("/", {}),
        "access with errors": owner.post("/access/", {}),
        "code with an error": owner.post(f"/requests/{requests['submitted'].pk}/verify/", {"code": "12"}),
        **{f"request {name}": owner.get(f"/requests/{request.pk}/") for name, request in requests.items()
           if name != "submitted"},
        "verify landing with an error": owner.get("/verify/", {"serial": "UC-NOT-A-SERIAL"}),
        **{f"verify {name}": owner.get(f"/verify/{requests[name].certificate.serial}/") for name in ("certified", "no_data")},
    }
    for name, response in pages.items():
        assert response.status_code in (200, 400), name
        controls = FormControls(response.content.decode())
        assert controls.controls or name.startswith("request"), name  # the forms were there to check
        assert not controls.unlabelled() and not controls.missing_descriptions(), name
    assert 'name="answer"' in pages["request in_review"].content.decode()  # the answer form was checked
    (code,) = [c for c in FormControls(pages["code with an error"].content.decode()).controls if c.get("name") == "code"]
    assert (code["inputmode"], code["autocomplete"]) == ("numeric", "one-time-code")


# Text colours (base.html's variables) and the backgrounds they are read on; WCAG 2 asks 4.5:1 of text.
TEXT_COLOURS = ("ink", "muted", "ok", "bad", "warn", "accent")
BACKGROUNDS = ("body", ".card", "header", ".status", "ol.steps li.done", ".messages li", ".messages li.error",
               ".messages li.success")


def relative_luminance(colour: str) -> float:
    """WCAG 2's relative luminance of an sRGB colour written #rgb or #rrggbb."""
    digits = colour.lstrip("#")
    digits = "".join(2 * d for d in digits) if len(digits) == 3 else digits
    channels = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_the_contrast_formula_gives_wcags_known_values():
    assert contrast("#000", "#fff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic just-too-light grey
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)


def test_every_text_colour_reaches_4_5_to_1_on_every_background_and_focus_is_outlined():
    css = (ROOT / "templates" / "base.html").read_text()
    variables = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{3,6})", re.search(r":root\s*\{([^}]*)\}", css).group(1)))

    def background(selector: str) -> str:
        rule = re.search(rf"(?:^|[\s}}]){re.escape(selector)}\s*\{{([^}}]*)\}}", css).group(1)
        return re.search(r"background:\s*(#[0-9a-fA-F]{3,6})", rule).group(1)

    pairs = {(name, selector): (variables[name], background(selector)) for name in TEXT_COLOURS for selector in BACKGROUNDS}
    pairs.update({("white", "button"): ("#fff", variables["accent"]), ("white", "button.danger"): ("#fff", variables["bad"])})
    too_faint = {pair: round(contrast(*colours), 2) for pair, colours in pairs.items() if contrast(*colours) < 4.5}
    assert not too_faint
    # Focus is outlined wherever it lands, thick enough to see (3 px), and no rule takes an outline away.
    assert re.search(r":focus-visible\s*\{\s*outline:\s*3px solid", css)
    for template in (ROOT / "templates").rglob("*.html"):
        assert not re.search(r"outline:\s*(none|0)\b", template.read_text()), template
