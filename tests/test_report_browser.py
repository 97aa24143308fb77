"""The report page in a real browser: headless Chromium loads it from disk, with no request leaving the page,
every image decoded, no horizontal scroll at 1280 px (screen and print), and a screenshot and a PDF made."""
from __future__ import annotations

import base64
import io
import json
import shutil

import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs headless Chromium and ChromeDriver: apt-get install chromium chromium-driver (CI installs them)")


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _requests(driver) -> list[tuple[str, str]]:
    """(document, URL) of every request since the last call, from the DevTools network events."""
    found = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            found.append((message["params"].get("documentURL", ""), message["params"]["request"]["url"]))
    return found


def _horizontal_overflow(driver) -> int:
    return driver.execute_script(
        "const main = document.querySelector('main');"
        "return Math.max(document.documentElement.scrollWidth - document.documentElement.clientWidth,"
        "                main.scrollWidth - main.clientWidth);")


def test_report_loads_offline_with_every_image(browser, report_runs, tmp_path):
    url = report_runs["out"].resolve().as_uri()
    browser.get("about:blank")
    _requests(browser)  # drop what the browser itself loaded at start (its new-tab page)
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.title.startswith("onnxfault report")

    requests = _requests(browser)
    assert (url, url) in requests
    left = [u for document, u in requests if u != url and (document == url or u.startswith(("http:", "https:")))
            and not u.startswith("data:")]
    assert left == [], f"requests left the page: {left}"
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [r for r in resources if not r.startswith("data:")] == []

    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt])")
    assert len(images) == report_runs["html"].count("<img ")
    assert all(done and width > 0 and height > 0 and alt for done, width, height, alt in images), images

    assert browser.execute_script("return window.innerWidth") == 1280
    assert _horizontal_overflow(browser) <= 0
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    assert _horizontal_overflow(browser) <= 0
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})

    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    picture = Image.open(shot).convert("L")
    assert picture.width == 1280 and picture.getextrema()[0] < 100 < picture.getextrema()[1]  # not blank

    pdf = base64.b64decode(browser.print_page())
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 2
    assert Image.open(io.BytesIO(base64.b64decode(browser.get_screenshot_as_base64()))).width == 1280
