"""What the browser tests share: Debian's headless Chromium (Selenium) at a desk's width and at a
phone's, screenshots kept as test artifacts, the phone check (no sideways scrolling), and signing a
reviewer in to the console through the admin's login form."""

import os
import re
import shutil
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
            driver.save_screenshot(str(path))
        finally:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return path

    return _screenshot


def no_horizontal_scroll(driver) -> None:
    """The page fits its window's width: nothing to scroll sideways. On failure, names the elements
    that reach past the right edge (the outermost first), to say what to fix."""
    fits = driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    if not fits:
        overflowing = driver.execute_script("""
            const edge = window.innerWidth;
            return [...document.querySelectorAll('body *')]
              .filter(e => e.getBoundingClientRect().right > edge + 0.5)
              .slice(0, 8)
              .map(e => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className ? '.' + String(e.className).trim().split(/\\s+/).join('.') : ''}`
                        + ` (right edge ${Math.round(e.getBoundingClientRect().right)} px)`);
        """)
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        pytest.fail(f"{driver.current_url} scrolls sideways at {width[1]} px (content {width[0]} px wide): "
                    + "; ".join(overflowing))


def open_every_details(driver) -> None:
    """Unfold every <details>, so that what it holds (the results' tables) is measured too."""
    driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")


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


def wait_for_url(driver, url_or_fragment: str) -> None:
    """A click returns before the browser has posted the form: wait for the page it leads to."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_SECONDS).until(expected_conditions.url_contains(url_or_fragment))


def owners_browser(driver, live_server, *requests) -> None:
    """Give `driver` a portal session that proved ownership of `requests` (as their codes would have)."""
    from importlib import import_module

    from django.conf import settings

    from compliance.portal.views import OWNED

    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[OWNED] = [str(request.pk) for request in requests]
    session.create()
    driver.get(live_server.url + "/health/")  # a page of the site, so that its cookie may be set
    driver.add_cookie({"name": settings.SESSION_COOKIE_NAME, "value": session.session_key, "path": "/"})
