"""AppTest fixtures: a runtime that needs no Stripe, with a credentials file."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ADMIN_EMAIL, VIEWER_EMAIL


@contextlib.contextmanager
def serving(runtime: Any) -> Iterator[Any]:
    """Pages read `runtime` inside the block, starting from empty `st.cache_data` (each test has
    its own DB) and leaving none behind."""
    import streamlit as st

    from services.runtime import set_runtime

    set_runtime(runtime)
    st.cache_data.clear()
    try:
        yield runtime
    finally:
        st.cache_data.clear()
        set_runtime(None)


@pytest.fixture
def shell_runtime(migrated_sqlite_url: str, tmp_path: Any) -> Iterator[Any]:
    """No Stripe needed: the shell must render (and gate) with an empty billing DB."""
    from demo import write_credentials_file
    from services.config import load_settings
    from services.runtime import Runtime, set_runtime

    credentials = tmp_path / "credentials.yaml"
    write_credentials_file(credentials, {ADMIN_EMAIL: {"name": "Ada", "password": "pw-admin"},
                                         VIEWER_EMAIL: {"name": "Vic", "password": "pw-viewer"}})
    settings = load_settings(
        {"DATABASE_URL": migrated_sqlite_url, "ADMIN_EMAILS": ADMIN_EMAIL, "STRIPE_API_KEY": "sk_test_shell",
         "STRIPE_API_BASE": "http://127.0.0.1:9", "STRIPE_MAX_RETRIES": "0",
         "AUTH_CREDENTIALS_FILE": str(credentials)},
        env_file=None,
    )
    runtime = Runtime(settings)
    set_runtime(runtime)
    yield runtime
    set_runtime(None)


