"""Browser tests: Debian's Chromium (/usr/bin/chromium) driven by the Python `playwright` package,
against the demo page (devstack/ui.py) on its own origin, the local host playing App Service
Authentication, and the simulator as Entra ID — with Microsoft's msal-browser unmodified.

`make test` installs Chromium first when it is missing and it runs as root (apt-get; `make browser`).
The tests skip, saying why, only when no Chromium is installed; with `REQUIRE_BROWSER=1` (set by
`.ci/run`) a missing Chromium fails them instead, so CI never passes by skipping. Screenshots go
to `test-artifacts/browser/` (one per badge state)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack import ui
from devstack.processes import easy_auth_settings
from devstack.simulator import Simulator
from tests.conftest import ROOT
from tests.e2e.conftest import Stack, start_stack  # noqa: F401  (the fixture, shared)

CHROMIUM = Path("/usr/bin/chromium")
# What the machine notes prescribe for Chromium on a closed network (no background connections).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"


def _need_chromium() -> None:
    if CHROMIUM.exists() and shutil.which("chromium"):
        return
    reason = (
        "Debian's chromium is not installed and could not be installed here (`make browser` installs it "
        "with apt-get when run as root): apt-get install chromium"
    )
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session."""
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield instance
        instance.close()


@dataclass
class Demo:
    """The demo page, the API behind it, and a browser page on it."""

    url: str
    origin: str
    stack: Stack
    sim: Simulator
    page: Any

    def sign_in(self, username: str) -> None:
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-ready=true]")
        self.page.click("#sign-in")
        self.page.click(f"button[value='{username}']")  # the simulator's sign-in page
        self.page.wait_for_selector("body[data-ready=true]")
        assert username in (self.page.text_content("#who") or "")

    def button(self, domain: str) -> Any:
        return self.page.locator(f"d365-push-button[domain='{domain}']")

    def wait_status(self, domain: str, status: str, timeout: float = 30) -> None:
        self.page.wait_for_selector(
            f"d365-push-button[domain='{domain}'][data-status='{status}']", timeout=timeout * 1000
        )

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def demo(browser: Any, sim: Simulator, start_stack: Callable[..., Stack]) -> Iterator[Callable[..., Demo]]:  # noqa: F811
    """`demo(**settings)`: the demo page on its own origin, a host whose CORS allows that origin
    only, a fresh browser context (no signed-in account)."""
    stops: list[Callable[[], None]] = []
    contexts: list[Any] = []

    def start(**settings: str) -> Demo:
        holder: dict[str, Any] = {}
        port, stop = ui.serve(0, lambda: holder["config"])
        stops.append(stop)
        origin = f"http://localhost:{port}"
        info = sim.info()
        stack = start_stack(**{**easy_auth_settings(info, [origin]), "HUNTER_D365_DOMAIN_KEY": "true", **settings})
        holder["config"] = {**ui.page_config(info, f"{stack.url}/api", origin), "pollMs": 300}
        sim.directory.add_spa_redirect(f"{origin}/")
        # The simulator's certificate comes from a CA of its own, which this browser does not know.
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1100, "height": 420})
        contexts.append(context)
        return Demo(f"{origin}/", origin, stack, sim, context.new_page())

    yield start
    for context in contexts:
        context.close()
    for stop in stops:
        stop()
