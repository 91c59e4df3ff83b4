"""The review console in headless Chromium: log in, label a sample, check queue and audit;
a new user's first login (admin key, a labeller made on /admin, a refused label kept on
its form).

Needs Debian's ``chromium`` and ``chromium-driver`` packages (``/usr/bin/chromium``,
``/usr/bin/chromedriver``) and the ``selenium`` Python package; nothing is
downloaded. A missing browser fails the test: it is not skipped.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from analytics.console.app import create_console
from tests.conftest import REPO
from tests.pool_seed import PII_PHONE, fresh_warehouse, seed_sample
from tests.unit.console.conftest import ADMIN_KEY, console_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage", "--window-size=1400,1000",
)  # fmt: skip
START_TIMEOUT_S = 20.0
PAGE_WAIT_S = 15.0
POLL_S = 0.05
SCREENSHOTS = REPO / "test-output"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A uvicorn console on 127.0.0.1 in a thread; yields (base URL, sample id)."""
    with fresh_warehouse(tmp_path) as warehouse:
        sample_id = seed_sample(warehouse, "c-browser")
        app = create_console(warehouse=warehouse, settings=console_settings(tmp_path))
        port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        srv = uvicorn.Server(config)
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not srv.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(POLL_S)
        try:
            yield f"http://127.0.0.1:{port}", sample_id
        finally:
            srv.should_exit = True
            thread.join(START_TIMEOUT_S)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"missing {missing}: apt-get install -y chromium chromium-driver (the browser test "
            "never skips)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    # Page loads after a click are not awaited by find_element; poll for elements so a
    # loaded machine (CI's two cores) does not race the next page.
    driver.implicitly_wait(PAGE_WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _create_labeller(browser: webdriver.Chrome, base: str) -> str:
    """The admin logs in and creates a labeller through the admin page; returns its key."""
    _login(browser, base, "admin", ADMIN_KEY)
    # The redirect after the click is not awaited by the click itself: wait for it.
    WebDriverWait(browser, PAGE_WAIT_S).until(lambda b: b.current_url.endswith("/admin"))
    form = browser.find_element(By.ID, "new-user")
    form.find_element(By.NAME, "username").send_keys("lena")
    form.find_element(By.CSS_SELECTOR, "input[value=labeller]").click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    key = browser.find_element(By.CSS_SELECTOR, "#new-key code").text
    browser.find_element(By.CSS_SELECTOR, "header form button").click()
    return key


def _login(browser: webdriver.Chrome, base: str, user: str, key: str) -> None:
    browser.get(base + "/login")
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "api_key").send_keys(key)
    browser.find_element(By.ID, "login").click()


def test_label_in_the_browser(server: tuple[str, str], browser: webdriver.Chrome) -> None:
    base, sample_id = server
    key = _create_labeller(browser, base)
    _login(browser, base, "lena", key)
    assert "lena" in browser.find_element(By.ID, "whoami").text

    queue = browser.find_element(By.ID, "queue")
    queue.find_element(By.LINK_TEXT, sample_id).click()
    assert PII_PHONE not in browser.page_source
    assert "[PHONE]" in browser.find_element(By.ID, "transcript").text
    corrected = browser.find_element(By.ID, "corrected_response")
    assert "courier" in (corrected.get_attribute("value") or "")  # pre-filled from the agent

    browser.find_element(By.ID, "acceptance-Reject").click()
    browser.find_element(By.ID, "pt-over_promise").click()
    browser.find_element(By.CSS_SELECTOR, "#risk_level option[value=high]").click()
    browser.find_element(By.ID, "save-label").click()
    assert "labelled: now problem" in browser.find_element(By.ID, "flash").text
    assert browser.find_element(By.ID, "status").text == "problem"

    browser.get(base + "/queue?status=problem")
    assert sample_id in browser.find_element(By.ID, "queue").text
    browser.get(base + "/queue")
    assert sample_id not in browser.find_element(By.ID, "queue").text

    browser.get(f"{base}/samples/{sample_id}/audit")
    audit = browser.find_element(By.ID, "audit").text
    assert "captured → problem" in audit
    assert "lena" in audit
    assert "labeller" in audit
    SCREENSHOTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / "console_audit.png"))


def test_first_login_and_a_refused_label_keeps_its_form(
    server: tuple[str, str], browser: webdriver.Chrome
) -> None:
    """Issue 18: the first user is ``admin`` with the admin key; it makes a labeller on
    /admin, who labels with the corrected response left out and sees why on the form,
    with what was typed still there, then completes it."""
    base, sample_id = server
    key = _create_labeller(browser, base)  # logs in as admin with ADMIN_KEY, logs out
    WebDriverWait(browser, PAGE_WAIT_S).until(lambda b: b.current_url.endswith("/login"))
    _login(browser, base, "lena", key)
    assert "lena" in browser.find_element(By.ID, "whoami").text
    browser.find_element(By.ID, "queue").find_element(By.LINK_TEXT, sample_id).click()

    note = "promised a delivery date it cannot keep"
    browser.find_element(By.ID, "acceptance-Reject").click()
    browser.find_element(By.ID, "pt-over_promise").click()
    browser.find_element(By.CSS_SELECTOR, "#risk_level option[value=high]").click()
    browser.find_element(By.ID, "corrected_response").clear()  # the agent's reply, removed
    browser.find_element(By.ID, "notes").send_keys(note)
    browser.find_element(By.ID, "save-label").click()

    error = browser.find_element(By.ID, "error-corrected_response")
    assert "corrected_response" in error.text
    assert "Not saved" in browser.find_element(By.ID, "label-error").text
    assert browser.find_elements(By.ID, "error-detail") == []  # the form, not an error page
    assert browser.find_element(By.ID, "notes").get_attribute("value") == note
    assert browser.find_element(By.ID, "acceptance-Reject").is_selected()
    assert browser.find_element(By.ID, "pt-over_promise").is_selected()
    assert browser.find_element(By.CSS_SELECTOR, "#risk_level option[value=high]").is_selected()
    assert browser.find_element(By.ID, "status").text == "captured"
    SCREENSHOTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / "console_label_refused.png"))

    browser.find_element(By.ID, "corrected_response").send_keys("I cannot promise a date.")
    browser.find_element(By.ID, "save-label").click()
    assert "labelled: now problem" in browser.find_element(By.ID, "flash").text
    assert browser.find_element(By.ID, "status").text == "problem"
