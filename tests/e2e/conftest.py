"""`billing-ops demo` in a subprocess on free ports, and a headless Chromium to drive it.

Browser tests use Debian's /usr/bin/chromium (never a downloaded browser);
they are skipped with a printed reason when it is not installed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from demo import DEMO_USERS
from tests.conftest import REPO_ROOT

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_START_TIMEOUT_S = 420
ARTIFACTS = REPO_ROOT / "artifacts" / "screenshots"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DemoServer:
    console_url: str
    emulator_url: str
    webhook_url: str
    data_dir: Path
    log_file: Path
    admin_email: str = "ops@example.com"
    eng_lead_email: str = "eng.lead@example.com"
    product_owner_email: str = "product.owner@example.com"
    viewer_email: str = "viewer@outside.io"
    users: dict[str, dict[str, str]] = field(default_factory=lambda: dict(DEMO_USERS))

    @property
    def admin_password(self) -> str:
        return self.password_for(self.admin_email)

    @property
    def viewer_password(self) -> str:
        return self.password_for(self.viewer_email)

    def password_for(self, email: str) -> str:
        return self.users[email]["password"]


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); browser tests skipped")
    data_dir = tmp_path_factory.mktemp("demo")
    ports = {name: _free_port() for name in ("console", "webhook", "emulator")}
    log_file = data_dir / "demo.log"
    command = [
        sys.executable, "-m", "cli", "demo",
        "--port", str(ports["console"]),
        "--webhook-port", str(ports["webhook"]),
        "--emulator-port", str(ports["emulator"]),
        "--data-dir", str(data_dir),
        "--customers", "60",
    ]
    with open(log_file, "wb") as log:
        # Its own process group, so the console and worker it starts are stopped with it.
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + DEMO_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if b"DEMO READY" in log_file.read_bytes():
            break
        if process.poll() is not None:
            pytest.fail(f"billing-ops demo exited early:\n{log_file.read_text()[-4000:]}")
        time.sleep(0.5)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"billing-ops demo not ready in {DEMO_START_TIMEOUT_S} s:\n{log_file.read_text()[-4000:]}")
    yield DemoServer(
        console_url=f"http://127.0.0.1:{ports['console']}",
        emulator_url=f"http://127.0.0.1:{ports['emulator']}",
        webhook_url=f"http://127.0.0.1:{ports['webhook']}/billing/webhook",
        data_dir=data_dir,
        log_file=log_file,
    )
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed; browser tests skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def sign_in(page: Any, demo: DemoServer, email: str) -> None:
    """Sign in through the real sign-in form and wait for the console to render."""
    page.goto(demo.console_url)
    # The password field is matched by role: its "Show password" toggle shares the label.
    page.get_by_role("textbox", name="Username").fill(email)
    page.get_by_role("textbox", name="Password").fill(demo.password_for(email))
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("[data-testid='stSidebarNav'], h1:has-text('No access')", timeout=60_000)


def open_page(page: Any, title: str, heading: str | None = None) -> None:
    """Follow the sidebar link (as a person would; a fresh page load keeps the session too)."""
    page.get_by_role("link", name=title, exact=True).click()
    page.wait_for_selector(f"h1:has-text('{heading or title}')", timeout=120_000)
    wait_until_idle(page)


def wait_until_idle(page: Any, timeout_ms: int = 60_000) -> None:
    """Streamlit shows a 'running' status widget while the script reruns."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms
    )


def press(page: Any, button: str, shows: str, timeout_ms: int = 60_000) -> None:
    """Click the button named `button`, wait until the page shows `shows`, then until it is idle
    (a click while the page still reruns can land on a widget that is being replaced)."""
    page.get_by_role("button", name=button).click()
    page.wait_for_selector(f"text={shows}", timeout=timeout_ms)
    wait_until_idle(page)


def choose_option(page: Any, label: str, text: str, attempts: int = 3) -> None:
    """Pick the option showing `text` in the selectbox labelled `label`, typing to filter it.
    A rerun that lands while the list is open replaces it (the option detaches and the list
    closes), so wait for the page to be idle first and reopen the list if that still happens."""
    for attempt in range(attempts):
        wait_until_idle(page)
        page.locator("[data-testid='stSelectbox']").filter(has_text=label).last.click()
        page.keyboard.type(text)
        try:
            page.get_by_role("option").filter(has_text=text).first.click(timeout=10_000)
        except Exception:
            if attempt == attempts - 1:
                screenshot(page, f"picker_{label.lower().replace(' ', '_')}")
                raise
            page.keyboard.press("Escape")
            continue
        wait_until_idle(page)
        return


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def metric_value(page: Any, label: str) -> str:
    """The value of an st.metric by its label."""
    metric = page.locator("[data-testid='stMetric']", has_text=label).first
    return str(metric.locator("[data-testid='stMetricValue']").inner_text()).strip()
