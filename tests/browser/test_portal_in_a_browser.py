"""The data owner's pages in a real browser (Debian's headless Chromium, driven by Selenium)."""

import re
import shutil

import pytest

pytestmark = [pytest.mark.browser]


@pytest.fixture
def browser(tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromedriver are not installed (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1600"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def test_an_owner_files_a_request_confirms_the_code_and_sees_its_status(browser, live_server, audit_log_reset_allowed, mailoutbox, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    from compliance.models import RemovalRequest, RequestStatus

    def wait_for_url(fragment: str) -> None:
        """A click returns before the browser has posted the form: wait for the page it leads to."""
        WebDriverWait(browser, 15).until(expected_conditions.url_contains(fragment))

    browser.get(live_server.url + "/")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()  # empty form: errors, not a crash
    assert browser.find_elements(By.CSS_SELECTOR, ".errorlist") and not RemovalRequest.objects.exists()

    browser.find_element(By.NAME, "full_name").send_keys("Alma Kestrel")
    browser.find_element(By.NAME, "email").send_keys("alma.kestrel@mail.example")
    browser.find_element(By.NAME, "description").send_keys("My biography and my employer.")
    browser.find_element(By.NAME, "confirm").click()
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for_url("/verify/")

    request = RemovalRequest.objects.get()
    assert browser.current_url.endswith(f"/requests/{request.pk}/verify/")
    assert request.reference in browser.find_element(By.TAG_NAME, "main").text

    browser.find_element(By.NAME, "code").send_keys("000000" if "000000" not in mailoutbox[-1].body else "111111")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "not correct" in browser.find_element(By.CSS_SELECTOR, ".errorlist").text

    code = re.search(r"\b(\d{6})\b", mailoutbox[-1].body).group(1)
    browser.find_element(By.NAME, "code").clear()
    browser.find_element(By.NAME, "code").send_keys(code)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(browser, 15).until(expected_conditions.url_to_be(f"{live_server.url}/requests/{request.pk}/"))
    assert browser.find_element(By.ID, "status").text == "Identity Verified"
    assert "confirmed" in browser.find_element(By.CSS_SELECTOR, ".messages").text
    assert RemovalRequest.objects.get().status == RequestStatus.IDENTITY_VERIFIED
    browser.save_screenshot(str(tmp_path / "request-status.png"))
