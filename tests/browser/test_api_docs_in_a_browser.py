"""The API's documentation in a real browser (Debian's headless Chromium): Swagger UI and Redoc
render every operation from this service alone, fetching nothing from another host."""

import pytest

from tests.test_api_schema import PROBLEMS


@pytest.mark.browser
@pytest.mark.parametrize("page, rendered", [
    ("/api/v1/docs/", ".opblock"),  # Swagger UI: one block per operation
    ("/api/v1/redoc/", "[data-section-id]"),  # Redoc: one section per operation
])
def test_the_docs_render_in_a_browser_from_this_service_alone(browser, live_server, audit_log_reset_allowed, page,
                                                              rendered):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live_server.url + page)
    WebDriverWait(browser, 30).until(
        lambda driver: len(driver.execute_script(f"return document.querySelectorAll('{rendered}')")) >= len(PROBLEMS))
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(entry => [entry.name, entry.responseStatus])")
    assert [live_server.url + "/api/v1/schema/", 200] in fetched, fetched
    # Redoc's sidebar asks for Redocly's logo from its CDN: the page's policy blocks it, unfetched.
    refused = " ".join(entry["message"] for entry in browser.get_log("browser") if entry["source"] == "security")
    for url, status in fetched:
        if not url.startswith(live_server.url + "/"):
            assert status == 0 and f"'{url}' violates the following Content Security Policy" in refused, url
