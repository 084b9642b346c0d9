"""Browser tests: Debian's Chromium (/usr/bin/chromium) driven by the Python `playwright` package,
against the demo page (devstack/ui.py) on its own origin, the local host playing App Service
Authentication, and the simulator as Entra ID — with Microsoft's msal-browser unmodified.

HTTPS as a person meets it: no certificate error is ignored. The simulator's certificate comes
from the session's kept local CA in a home of the session's own (`user_home`, tests/conftest.py);
the tests trust it exactly as docs/local-https.md tells a person — `make trust` — with `HOME`
pointed at that directory and `ARGS=--no-system` (browsers read only their NSS database, and CI
running as root must not change the machine's store), then start Chromium with that `HOME`.

`make test` installs Chromium and NSS's certutil first when they are missing and it runs as root
(apt-get; `make browser`, `make nss-tools`). The tests skip, saying why, only when they are not
installed; with `REQUIRE_BROWSER=1` (set by `.ci/run`) a missing one fails them instead, so CI
never passes by skipping. Screenshots go to `test-artifacts/browser/` (one per state), and with
`SCREENSHOTS_TO_DOCS=1` also to `docs/screenshots/` (the pictures the docs show).
"""

from __future__ import annotations

import os
import shutil
import subprocess
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
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"


def _missing(reason: str) -> None:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _need_chromium() -> None:
    if CHROMIUM.exists() and shutil.which("chromium"):
        return
    _missing(
        "Debian's chromium is not installed and could not be installed here (`make browser` installs it "
        "with apt-get when run as root): apt-get install chromium"
    )


def _need_certutil() -> None:
    if shutil.which("certutil"):
        return
    _missing(
        "NSS's certutil is not installed (`make nss-tools` installs libnss3-tools with apt-get when run as "
        "root): apt-get install libnss3-tools"
    )


def home_env(home: Path) -> dict[str, str]:
    """This process's environment as a person whose home is `home` has it (no CA location set
    elsewhere, so the CA is the one `make run` and `make trust` find in that home)."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_DATA_HOME", "DEVSTACK_CA_DIR")}
    return env | {"HOME": str(home)}


@pytest.fixture(scope="session")
def trusted_home(user_home: Path, simulator: Simulator) -> Path:
    """`user_home` after `make trust ARGS=--no-system` ran in it, as docs/local-https.md says."""
    _need_certutil()
    done = subprocess.run(
        ["make", "--no-print-directory", "trust", "ARGS=--no-system"],
        cwd=ROOT,
        env=home_env(user_home),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trusted by  Chromium/Chrome (~/.pki/nssdb)" in done.stdout, done.stdout
    return user_home


def launch(playwright: Any, home: Path) -> Any:
    """A headless Chromium whose user's home is `home` (its NSS database: ~/.pki/nssdb)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS, env=home_env(home))


@pytest.fixture(scope="session")
def playwright_session() -> Iterator[Any]:
    """Playwright for the session."""
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_session: Any, trusted_home: Path) -> Iterator[Any]:
    """One headless Chromium for the session, trusting the local CA the documented way."""
    instance = launch(playwright_session, trusted_home)
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

    def screenshot(self, name: str, page: Any = None) -> Path:
        """The page (or another `page`) as a PNG in test-artifacts/browser/ (and docs/screenshots/
        with SCREENSHOTS_TO_DOCS=1)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        (page or self.page).screenshot(path=str(path), full_page=True)
        if os.environ.get("SCREENSHOTS_TO_DOCS") == "1":
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
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
        # No certificate error is ignored: the browser trusts the local CA through `make trust`.
        context = browser.new_context(viewport={"width": 1100, "height": 420})
        contexts.append(context)
        return Demo(f"{origin}/", origin, stack, sim, context.new_page())

    yield start
    for context in contexts:
        context.close()
    for stop in stops:
        stop()
