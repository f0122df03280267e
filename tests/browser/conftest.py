"""What the browser tests share: Debian's headless Chromium (Selenium) at a desk's width and at a
phone's, screenshots kept as test artifacts, the phone check (no sideways scrolling), and signing a
reviewer in to the console through the admin's login form."""

import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Where the screenshots go (one folder per test); CI keeps the folder as the run's artifacts.
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "var" / "test-artifacts" / "screenshots"))
DESK, PHONE = (1200, 1600), (390, 844)
REVIEWER_PASSWORD = "a reviewer's long passphrase"
WAIT_SECONDS = 15


def chromium(width: int, height: int):
    """A headless Chromium whose page is `width` CSS pixels wide. Scrollbars hidden, as on a phone
    (overlay scrollbars): a desktop scrollbar would take 15 px of a 390 px page. The size is set
    once started: `--window-size` stops at 500 px wide."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromedriver are not installed (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_window_size(width, height)
    driver.implicitly_wait(5)
    return driver


@pytest.fixture
def browser():
    driver = chromium(*DESK)
    yield driver
    driver.quit()


@pytest.fixture
def phone():
    """The same browser 390 CSS pixels wide (an iPhone 12 to 15)."""
    driver = chromium(*PHONE)
    assert driver.execute_script("return window.innerWidth") == PHONE[0]
    yield driver
    driver.quit()


@pytest.fixture
def screenshot(request):
    """`screenshot(driver, name)` saves the whole page as ARTIFACTS/<test>/<NN>-<name>.png (numbered
    in the order taken) and returns its path."""
    folder = ARTIFACTS / re.sub(r"[^\w.-]+", "-", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)  # this run's pictures only
    taken = []

    def _screenshot(driver, name: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        taken.append(name)
        path = folder / f"{len(taken):02d}-{name}.png"
        width = driver.execute_script("return window.innerWidth")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        # The whole page, not only what fits the window: Chromium draws what the viewport holds.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": min(height, 12000), "deviceScaleFactor": 1, "mobile": False})
        try:
            images_loaded(driver)
            driver.save_screenshot(str(path))
        finally:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return path

    return _screenshot


def no_horizontal_scroll(driver) -> None:
    """The page fits its window's width: nothing to scroll sideways. On failure, names the elements
    that reach past the right edge, or whose text spills past it (the outermost first), to say what
    to fix."""
    fits = driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    if not fits:
        overflowing = driver.execute_script("""
            const edge = window.innerWidth;
            return [...document.querySelectorAll('body *')]
              .filter(e => e.getBoundingClientRect().right > edge + 0.5
                           || (getComputedStyle(e).overflowX === 'visible'
                               && e.getBoundingClientRect().left + e.scrollWidth > edge + 0.5))
              .slice(0, 8)
              .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                        + (e.className ? '.' + String(e.className).trim().split(/\\s+/).join('.') : '')
                        + ` (right edge ${Math.round(e.getBoundingClientRect().right)} px)`);
        """)
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        pytest.fail(f"{driver.current_url} scrolls sideways at {width[1]} px (content {width[0]} px wide): "
                    + "; ".join(overflowing))


def images_loaded(driver) -> None:
    """Wait until the page's images (lazy ones included, asked for now) have loaded or failed."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))


def open_every_details(driver) -> None:
    """Unfold every <details>, so that what it holds (the results' tables, the figures) is measured too."""
    driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    images_loaded(driver)


def fits_a_phone(driver, screenshot, name: str) -> None:
    """The page in `driver` (the `phone` fixture's), every <details> unfolded, fits 390 px; saved as `name`."""
    open_every_details(driver)
    assert driver.execute_script("return window.innerWidth") == PHONE[0]
    no_horizontal_scroll(driver)
    screenshot(driver, name)


@pytest.fixture
def reviewer(db):
    """A member of the legal team who signs in to the console with a password (the admin's login
    asks for a staff account)."""
    from compliance.management.commands.create_api_user import ensure_api_user

    user, _ = ensure_api_user("legal-reviewer")
    user.is_staff = True
    user.set_password(REVIEWER_PASSWORD)
    user.save()
    return user


def sign_in_to_console(driver, live_server, user) -> None:
    """Open the console as someone not signed in: its page sends them to the admin's login form, and
    back to the console once signed in."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(live_server.url + "/console/")
    assert "/admin/login/" in driver.current_url
    driver.find_element(By.NAME, "username").send_keys(user.get_username())
    driver.find_element(By.NAME, "password").send_keys(REVIEWER_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
    WebDriverWait(driver, WAIT_SECONDS).until(expected_conditions.url_to_be(live_server.url + "/console/"))


def wait_for_url(driver, url_or_part: str) -> None:
    """A click returns before the browser has posted the form: wait for the page it leads to (a whole
    URL, http…, or a part of one)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    arrived = expected_conditions.url_to_be if url_or_part.startswith("http") else expected_conditions.url_contains
    WebDriverWait(driver, WAIT_SECONDS).until(arrived(url_or_part))


def text_of(driver, selector: str) -> str | None:
    """The text of the first element matching `selector`, read in one step: the request page swaps
    its live part every few seconds, and an element found a moment before may be gone."""
    return driver.execute_script("var e = document.querySelector(arguments[0]); return e ? e.innerText : null;", selector)


def wait_for_text(driver, selector: str, expected, seconds: float = WAIT_SECONDS) -> str:
    """Wait until the first element matching `selector` reads `expected` (a string it contains, or a
    test of its text), across the page loads a click or the page itself starts; return its text."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def read(d):
        text = text_of(d, selector)
        return text if text is not None and (expected(text) if callable(expected) else expected in text) else False

    return WebDriverWait(driver, seconds, ignored_exceptions=(WebDriverException,)).until(read)


def owned_session(*requests) -> str:
    """A portal session that proved ownership of `requests` (as their codes would have); its key."""
    from importlib import import_module

    from django.conf import settings

    from compliance.portal.views import OWNED

    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[OWNED] = [str(request.pk) for request in requests]
    session.create()
    return session.session_key


def owners_browser(driver, live_server, *requests) -> None:
    from django.conf import settings

    driver.get(live_server.url + "/health/")  # a page of the site, so that its cookie may be set
    driver.add_cookie({"name": settings.SESSION_COOKIE_NAME, "value": owned_session(*requests), "path": "/"})


def owners_client(*requests):
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = owned_session(*requests)
    return client


# What owners paste: a link longer than a phone is wide, with a token in it wider still.
LONG_LINK = ("https://forum.example/members/bo-reader-1987/posts?thread=2019-05-my-old-employer-and-my-home-town"
             "&session=Zm9yZ2V0LW1lLXBvcnRhbC1zZXNzaW9uLXRva2VuLWxvbmdlci10aGFuLWEtcGhvbmU")


@pytest.fixture
def requests_in_every_state(request, audit_log_reset_allowed, store, submit, legal_user, django_capture_on_commit_callbacks):
    """A request in each state its pages show, for a live server: not yet confirmed, in review (a
    long link in its description, a near match for the reviewers), running (40%), certified with its
    audit's results, and a person in no model (approved, so the statement is signed here, eagerly).
    Rows written directly where work would have run (tests/conftest.py's fixtures)."""
    from compliance import services
    from compliance.models import RemovalRequest
    from tests.conftest import governed_rows
    from tests.test_portal_progress import running_job

    def verified(email: str, full_name: str) -> RemovalRequest:
        filed, code = submit(email=email, full_name=full_name)
        return services.verify_identity(request_id=filed.pk, code=code)

    reader = "bo.reader@mail.example"
    governed_rows(store, [
        {"record_id": "ticket-0001", "owner_key": reader, "kind": "ticket", "text": "Ticket from Bo Reader."},
        {"record_id": "note-0042", "owner_key": "cy.agent@support.example", "kind": "agent_note",
         "text": f"Agent note: forwarded the invoice to {reader} after the call, see {LONG_LINK}."},
    ], seconds_per_step=0.5)
    no_data = verified("nobody.here@mail.example", "Nobody Here")
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(request_id=no_data.pk, user=legal_user)
    in_review = verified(reader, "Bo Reader")
    RemovalRequest.objects.filter(pk=in_review.pk).update(description=f"My posts on {LONG_LINK} and my employer.")
    running = verified("dee.runner@mail.example", "Dee Runner")
    running_job(running, progress=0.4)
    certified, _ = request.getfixturevalue("certified")
    submitted, _ = submit(email="not.yet@mail.example", full_name="Not Yet")
    return {name: RemovalRequest.objects.get(pk=value.pk) for name, value in {
        "submitted": submitted, "in_review": in_review, "running": running, "certified": certified,
        "no_data": no_data}.items()}


SKIPPED_INPUTS = {"hidden", "submit", "button", "reset", "image"}


class FormControls(HTMLParser):
    """The controls a person fills in on a page (inputs other than hidden ones and buttons, selects,
    text areas), and which of them have no name a screen reader can read: no <label for=their id>,
    no <label> around them, no aria-label or aria-labelledby. And the ids that aria-describedby
    names (a field's help and errors) but that no element of the page has: a screen reader reads
    nothing there."""

    def __init__(self, html: str):
        super().__init__()
        self.controls, self.labelled_ids, self.open_labels = [], set(), 0
        self.ids, self.described_by = set(), set()
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.ids.add(attributes.get("id"))
        self.described_by.update((attributes.get("aria-describedby") or "").split())
        if tag == "label":
            self.open_labels += 1
            if attributes.get("for"):
                self.labelled_ids.add(attributes["for"])
        elif tag in ("input", "select", "textarea") and attributes.get("type", "text") not in SKIPPED_INPUTS:
            self.controls.append({**attributes, "tag": tag, "in_label": self.open_labels > 0})

    def handle_endtag(self, tag):
        if tag == "label":
            self.open_labels -= 1

    def unlabelled(self) -> list[str]:
        return [f"<{c['tag']} name={c.get('name')} id={c.get('id')}>" for c in self.controls
                if not (c["in_label"] or c.get("id") in self.labelled_ids or c.get("aria-label")
                        or c.get("aria-labelledby"))]

    def missing_descriptions(self) -> set[str]:
        return self.described_by - self.ids
