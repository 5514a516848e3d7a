"""Headless Chromium (Debian's chromium + chromium-driver) and the whole stack behind it."""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.browser.checkout_page import screenshot
from tests.run.stack import RunningStack, delete_stack_topology, launch, stack_env

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)
INSTALL_HINT = (
    "install Debian's packages: apt-get install chromium chromium-driver "
    "(`make test` does it as root)"
)
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def chromium_binary() -> str:
    """The system Chromium; a clear failure (never a skip, never a download) without it."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(f"the browser tests need Chromium and it is not installed: {INSTALL_HINT}")
    if not CHROMEDRIVER.exists():
        pytest.fail(f"the browser tests need {CHROMEDRIVER} and it is missing: {INSTALL_HINT}")
    return binary


@pytest.fixture(scope="module")
def chrome() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module, with a fresh profile and network logging on."""
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_binary()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # Network events let a test see every request body the browser sent, and to whom.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        # An explicit driver path: selenium-manager never runs, so nothing is downloaded.
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()


@contextlib.contextmanager
def running_demo(env: dict[str, str], log_name: str) -> Iterator[RunningStack]:
    """``make run`` (sandbox, ingress, checkout, worker and the demo shop) with ``env``."""
    stack = launch(env)
    try:
        yield stack
    finally:
        stack.stop()
        stack.save_log(log_name)
        delete_stack_topology(env)


@pytest.fixture(scope="module")
def demo(base_env: dict[str, str]) -> Iterator[RunningStack]:
    """``make run`` on free ports with this run's database and names of its own."""
    with running_demo(stack_env(base_env, "browser"), "demo-stack") as stack:
        yield stack


@pytest.fixture(scope="module")
def cross_site_demo(base_env: dict[str, str]) -> Iterator[RunningStack]:
    """The same, but the shopper's browser reaches the sandbox (the SDK, the card fields, the
    3-D Secure page) at ``localhost``: another site than the storefront's ``127.0.0.1``, as a
    bank's challenge page is in production. The processes still call it at ``127.0.0.1``.
    """
    env = stack_env(base_env, "browser-xsite")
    sandbox = urlsplit(env["PAYRAILS_BASE_URL"])
    env["PAYRAILS_SDK_ORIGIN"] = f"{sandbox.scheme}://localhost:{sandbox.port}"
    with running_demo(env, "cross-site-demo-stack") as stack:
        yield stack


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so a fixture can tell whether its test failed."""
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that drives Chromium and fails (or times out) leaves a picture of where it was."""
    if "chrome" not in request.fixturenames:
        yield
        return
    driver: webdriver.Chrome = request.getfixturevalue("chrome")
    yield
    reports = request.node.stash.get(PHASE_REPORTS, {})
    if any(report.failed for report in reports.values()):
        screenshot(driver, "failed-" + re.sub(r"[^\w.-]+", "-", request.node.name))
