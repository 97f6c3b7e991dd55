"""Headless Chromium for the dashboard's browser tests: Debian's `chromium` and
`chromium-driver` (installed by `make browser`), driven by selenium pointed at them, so nothing is
downloaded at test time. Missing browser: the tests skip, saying how to get it. Screenshots go to
test-output/dashboard/ (gitignored) or $SECTORSTORAGE_TEST_OUTPUT."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import REPO

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def output_dir() -> Path:
    folder = Path(os.environ.get("SECTORSTORAGE_TEST_OUTPUT", REPO / "test-output")) / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _binaries() -> tuple[str, str] | None:
    browser = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless Chromium (selenium WebDriver), closed after the module."""
    found = _binaries()
    if found is None:
        pytest.skip(
            "no Chromium and chromedriver here: `make browser` installs Debian's chromium and chromium-driver "
            "(as root or with passwordless sudo)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = found[0]
    for arg in (
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    if os.geteuid() == 0:
        # Chromium refuses to run as root with its sandbox on.
        options.add_argument("--no-sandbox")
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
