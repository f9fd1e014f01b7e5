"""Auto-refreshing fragments stop once the session is over (issue 16, item 8).

A fragment with `run_every` re-runs on its own while the page is open. Each
one asks `fragment_user()` first: past the idle timeout (or the absolute
lifetime) it signs out and renders nothing, and a timed re-run never counts as
activity, so a page left open still reaches the idle timeout.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from typing import Any

import pytest

from services.auth import Identity
from tests.conftest import ADMIN_EMAIL, REPO_ROOT, VIEWER_EMAIL, page_text

SECRET = "SECRET-PANEL-DATA"


@pytest.fixture
def console(migrated_sqlite_url: str) -> Iterator[Any]:
    from services.config import load_settings
    from services.runtime import Runtime, set_runtime

    settings = load_settings({"DATABASE_URL": migrated_sqlite_url, "ADMIN_EMAILS": ADMIN_EMAIL,
                              "STRIPE_API_KEY": "sk_test_fragments", "STRIPE_API_BASE": "http://127.0.0.1:9",
                              "STRIPE_MAX_RETRIES": "0"}, env_file=None)
    runtime = Runtime(settings)
    set_runtime(runtime)
    yield runtime
    set_runtime(None)


def _panel_script() -> None:
    import streamlit as st

    from app_pages._shared import fragment_user

    @st.fragment(run_every=30)
    def panel() -> None:
        if fragment_user() is None:
            return
        st.write("SECRET-PANEL-DATA")

    panel()


def _run_panel(identity: Identity | None) -> Any:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_panel_script, default_timeout=30)
    if identity is not None:
        at.session_state["identity"] = identity
    at.run()
    return at


def _identity(email: str = ADMIN_EMAIL, *, idle: float = 0, age: float = 0) -> Identity:
    now = time.time()
    return Identity(email=email, name="x", signed_in_at=now - max(age, idle), last_seen_at=now - idle)


@pytest.mark.parametrize(
    "identity",
    [
        _identity(idle=31 * 60),  # idle past the 30 min timeout
        _identity(idle=60, age=12 * 3600 + 60),  # active, but past the 12 h lifetime
        _identity(VIEWER_EMAIL),  # never an admin
        None,  # already signed out
    ],
    ids=["idle", "lifetime", "non-admin", "signed-out"],
)
def test_fragment_renders_nothing_once_the_session_is_over(console: Any, identity: Identity | None) -> None:
    at = _run_panel(identity)
    assert not at.exception
    text = page_text(at)
    assert SECRET not in text
    assert "Signed out" in text
    assert "identity" not in at.session_state


def test_timed_rerun_is_not_activity(console: Any) -> None:
    """A live session renders, but the fragment leaves last_seen_at where the person left it."""
    identity = _identity(idle=25 * 60)
    at = _run_panel(identity)
    assert SECRET in page_text(at)
    assert at.session_state["identity"].last_seen_at == identity.last_seen_at
    # Six more minutes of nothing but timed re-runs: the idle timeout fires.
    at.session_state["identity"] = _identity(idle=31 * 60)
    at.run()
    assert SECRET not in page_text(at) and "identity" not in at.session_state


def _timed_fragments() -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for path in sorted((REPO_ROOT / "app_pages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and any(k.arg == "run_every" for k in d.keywords)
                for d in node.decorator_list
            ):
                found.append((path.name, node))
    return found


def test_every_timed_fragment_checks_the_session_first() -> None:
    fragments = _timed_fragments()
    assert {name for name, _ in fragments} >= {"webhooks.py", "first_24h.py", "reconciliation.py"}
    for name, node in fragments:
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):  # a docstring
            first = node.body[1]
        assert isinstance(first, ast.If) and "fragment_user()" in ast.unparse(first.test), (
            f"{name}:{node.name} must start with `if fragment_user() is None: return`"
        )
        assert isinstance(first.body[0], ast.Return)
