"""Shared fixtures: databases (SQLite and the local PostgreSQL), the Stripe
emulator, settings, the runtime, and signed-in identities for AppTest."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from db.session import dispose_engines
from services.emulator_client import emulator_call

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ADMIN_EMAIL = "admin@example.com"
VIEWER_EMAIL = "viewer@outside.io"
ENG_LEAD_EMAIL = "eng.lead@example.com"
PRODUCT_OWNER_EMAIL = "product.owner@example.com"
# Canary secrets: security tests assert these never appear in output.
TEST_API_KEY = "sk_test_CANARYkey0123456789abcdef"
TEST_WEBHOOK_SECRETS = ("whsec_CANARYprimary0123456789abcdef", "whsec_CANARYrotated0123456789abcdef")


def _postgres_unreachable_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=2):
            return None
    except Exception as error:  # any failure means "skip Postgres", printed below
        return f"PostgreSQL at 127.0.0.1:5432 unreachable: {error.__class__.__name__}"


_PG_SKIP_REASON = _postgres_unreachable_reason()


def pytest_report_header(config: pytest.Config) -> str:
    return "postgres: " + (_PG_SKIP_REASON or "reachable at 127.0.0.1:5432 (integration tests run on it)")


E2E_DIR = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers that follow from what a test uses: a PostgreSQL database asked for directly is
    `postgres`; everything under tests/e2e drives the browser and is `e2e` (the fast lane,
    `-m "not e2e"`, leaves it out)."""
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
        if E2E_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def sqlite_url(tmp_path: Any) -> Iterator[str]:
    yield f"sqlite:///{tmp_path}/billing_ops_test.db"
    dispose_engines()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    if _PG_SKIP_REASON:
        pytest.skip(_PG_SKIP_REASON)
    import psycopg

    name = f"bo_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    dispose_engines()
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Parametrised: every integration test using it runs on SQLite and PostgreSQL (that half
    carries the `postgres` marker, so `-m "not postgres"` runs the SQLite half alone)."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def migrated_url(database_url: str) -> str:
    from db.migrate import upgrade

    upgrade(database_url)
    return database_url


@pytest.fixture
def migrated_sqlite_url(sqlite_url: str) -> str:
    from db.migrate import upgrade

    upgrade(sqlite_url)
    return sqlite_url


# --- the Stripe emulator ----------------------------------------------------------------
@pytest.fixture(scope="session")
def emulator_server() -> Iterator[Any]:
    from emulator.server import EmulatorServer

    server = EmulatorServer(host="127.0.0.1", port=0, rate_limit_per_second=10_000)
    server.start()
    yield server
    server.stop()


def emulator_admin(base_url: str, path: str, payload: dict[str, Any] | None = None, method: str = "POST") -> Any:
    return emulator_call(base_url, path, payload, method=method)


class EmulatorHandle:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.base_url: str = server.base_url

    def admin(self, path: str, payload: dict[str, Any] | None = None, method: str = "POST") -> Any:
        return emulator_admin(self.base_url, path, payload, method)

    def requests(self) -> list[dict[str, Any]]:
        result = self.admin("requests", method="GET")
        return list(result["data"] if isinstance(result, dict) else result)

    def clear_requests(self) -> None:
        self.admin("requests", method="DELETE")

    def flush_webhooks(self) -> None:
        self.admin("webhooks/flush")


@pytest.fixture
def emulator(emulator_server: Any) -> EmulatorHandle:
    """The session's emulator, reset to empty for this test."""
    handle = EmulatorHandle(emulator_server)
    handle.admin("reset")
    handle.admin("rate_limit", {"per_second": 10_000})
    return handle


# --- settings and runtime -------------------------------------------------------------------
SettingsFactory = Callable[..., Any]


def emulator_env(emulator: EmulatorHandle, database_url: str) -> dict[str, str]:
    """The settings every emulator-backed test starts from (env var names): test mode on the
    emulator with the canary key and secrets, the test admins and signers, no rate limit in the way."""
    return {
        "DATABASE_URL": database_url,
        "STRIPE_API_KEY": TEST_API_KEY,
        "STRIPE_API_BASE": emulator.base_url,
        "STRIPE_MODE": "test",
        "STRIPE_WEBHOOK_SECRETS": ",".join(TEST_WEBHOOK_SECRETS),
        "ADMIN_EMAILS": ADMIN_EMAIL,
        "SIGNOFF_ENG_LEADS": ENG_LEAD_EMAIL,
        "SIGNOFF_PRODUCT_OWNERS": PRODUCT_OWNER_EMAIL,
        "STRIPE_RATE_LIMIT_PER_SECOND": "1000",
    }


@pytest.fixture
def make_settings(emulator: EmulatorHandle, sqlite_url: str) -> SettingsFactory:
    """Settings pointing at the emulator; keyword overrides use env var names."""
    from services.config import load_settings

    def build(**overrides: Any) -> Any:
        env = {**emulator_env(emulator, sqlite_url), "ADMIN_EMAIL_DOMAIN": "example.com",
               "STRIPE_MAX_RETRIES": "2"}
        env.update({k: str(v) for k, v in overrides.items() if v is not None})
        for key in [k for k, v in overrides.items() if v is None]:
            env.pop(key, None)
        return load_settings(env, env_file=None)

    return build


@pytest.fixture
def runtime_factory(make_settings: SettingsFactory) -> Iterator[Callable[..., Any]]:
    """Build a Runtime on a migrated DB and install it as the process runtime."""
    from db.migrate import upgrade
    from services.runtime import Runtime, set_runtime

    def build(**overrides: Any) -> Any:
        settings = make_settings(**overrides)
        upgrade(settings.database_url)
        runtime = Runtime(settings)
        set_runtime(runtime)
        return runtime

    yield build
    set_runtime(None)


@pytest.fixture
def runtime(runtime_factory: Callable[..., Any]) -> Any:
    return runtime_factory()


# --- runtimes installed for AppTest ------------------------------------------------------------
@contextmanager
def installed_runtime(runtime: Any, *, gateway: Any = None) -> Iterator[Any]:
    """`runtime` as the process runtime for the pages (with `gateway` in the cached_property's
    slot when given, so no Stripe is needed), Streamlit's data caches empty before and after."""
    import streamlit as st

    from services.runtime import set_runtime

    if gateway is not None:
        runtime.__dict__["gateway"] = gateway
    set_runtime(runtime)
    st.cache_data.clear()
    try:
        yield runtime
    finally:
        st.cache_data.clear()
        set_runtime(None)


def offline_runtime(database_url: str, credentials: Path, *, api_key: str = "sk_test_offline") -> Any:
    """A runtime on `database_url` with a sign-in credentials file and no reachable Stripe (a
    closed port, no retries), installed as the process runtime; the caller unsets it."""
    from services.config import load_settings
    from services.runtime import Runtime, set_runtime

    settings = load_settings(
        {"DATABASE_URL": database_url, "ADMIN_EMAILS": ADMIN_EMAIL, "STRIPE_API_KEY": api_key,
         "STRIPE_API_BASE": "http://127.0.0.1:9", "STRIPE_MAX_RETRIES": "0",
         "AUTH_CREDENTIALS_FILE": str(credentials)},
        env_file=None,
    )
    runtime = Runtime(settings)
    set_runtime(runtime)
    return runtime


# --- identities for AppTest ------------------------------------------------------------------
def identity_for(email: str) -> Any:
    from services.auth import Identity

    now = time.time()
    return Identity(email=email, name=email.split("@")[0], signed_in_at=now, last_seen_at=now)


ROLES = {"signed_out": None, "non_admin": VIEWER_EMAIL, "admin": ADMIN_EMAIL}


def app_test_for(page: str | None, role: str, *, timeout: float = 30) -> Any:
    """An AppTest of app.py signed in as `role`, switched to `page` (a file in app_pages/)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=timeout)
    email = ROLES[role]
    if email is not None:
        at.session_state["identity"] = identity_for(email)
    at.run()
    if page is not None:
        try:
            at.switch_page(f"app_pages/{page}.py")
        except ValueError:
            # Not in this role's navigation: the page cannot be reached this way at all.
            return at
        at.run()
    return at


def page_direct_test(page: str, role: str, *, timeout: float = 30) -> Any:
    """Run one page file on its own (as a stale deep link or legacy discovery would),
    to prove its own require_admin() gate holds without navigation. `role` is a ROLES key or the
    email of the person signed in (e.g. an engineering lead on the sign-off page)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO_ROOT / "app_pages" / f"{page}.py"), default_timeout=timeout)
    email = ROLES.get(role, role)
    if email is not None:
        at.session_state["identity"] = identity_for(email)
    at.run()
    return at


def choose(at: Any, label: str, value: Any) -> None:
    """Pick `value` in the select box labelled `label` (takes effect on the next run)."""
    next(s for s in at.selectbox if s.label == label).set_value(value)


def enter(at: Any, label: str, text: str) -> None:
    """Type `text` into the text input or area whose label starts with `label`."""
    next(w for w in [*at.text_input, *at.text_area] if w.label.startswith(label)).input(text)


def click(at: Any, label: str) -> None:
    """Press the button labelled `label` and run the page."""
    next(b for b in at.button if b.label == label).click()
    at.run()


_MARKDOWN_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def unescape_markdown(body: str) -> str:
    """What Markdown shows for backslash-escaped punctuation (`\\_` reads as `_`); invisible
    word joiners (which keep URLs and emails from being autolinked) are not read."""
    return _MARKDOWN_ESCAPE.sub(r"\1", body).replace("\u2060", "")


def page_text(at: Any) -> str:
    """Everything a person would read on the page, for 'shows'/'does not show' asserts
    (Markdown escapes as they read, so an escaped customer name or secret still matches)."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "text", "error", "warning",
                 "info", "success", "metric", "exception"):
        for element in getattr(at, kind, []):
            value = getattr(element, "value", None)
            label = getattr(element, "label", None)
            read = (lambda text: text) if kind in ("text", "exception") else unescape_markdown
            parts.extend(read(str(p)) for p in (label, value) if p is not None)
    for df in getattr(at, "dataframe", []):
        parts.append(df.value.to_string())
    for table in getattr(at, "table", []):
        parts.append(str(table.value))
    return "\n".join(parts)


def assert_page_hides(page: str, role: str, *, words: Sequence[str] = (), buttons: Sequence[str] = ()) -> None:
    """Reached through the navigation and run on its own (a stale deep link), the page shows
    `role` none of `words` (case-insensitive) and none of `buttons`, and raises nothing."""
    for at in (app_test_for(page, role), page_direct_test(page, role)):
        assert not at.exception
        text = page_text(at).lower()
        shown = [w for w in words if w.lower() in text] + [b.label for b in at.button if b.label in buttons]
        assert shown == [], f"{page} shows {role}: {shown}"


def rendered(page: str, role: str = "admin") -> tuple[Any, str]:
    """The page as `role` sees it through the navigation, once it ran without raising: the
    AppTest (to click on) and everything it shows."""
    at = app_test_for(page, role)
    assert not at.exception
    return at, page_text(at)


def database_contents(runtime: Any) -> dict[str, list[str]]:
    """Every row of every table, as text: equal before and after a render proves it wrote nothing."""
    from sqlalchemy import select

    from db.models import Base

    with runtime.uow() as uow:
        return {table.name: sorted(repr(tuple(row)) for row in uow.session.execute(select(table)))
                for table in Base.metadata.sorted_tables}


def chart_layouts(at: Any) -> list[dict[str, Any]]:
    """The layout of every plotly chart the page drew (as sent to the browser)."""
    import json

    return [json.loads(chart.proto.spec)["layout"] for chart in at.get("plotly_chart")]
