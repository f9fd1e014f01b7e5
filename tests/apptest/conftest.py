"""AppTest fixtures: a runtime that needs no Stripe, with a credentials file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ADMIN_EMAIL, VIEWER_EMAIL, offline_runtime


@pytest.fixture
def shell_runtime(migrated_sqlite_url: str, tmp_path: Any) -> Iterator[Any]:
    """No Stripe needed: the shell must render (and gate) with an empty billing DB."""
    from demo import write_credentials_file
    from services.runtime import set_runtime

    credentials = tmp_path / "credentials.yaml"
    write_credentials_file(credentials, {ADMIN_EMAIL: {"name": "Ada", "password": "pw-admin"},
                                         VIEWER_EMAIL: {"name": "Vic", "password": "pw-viewer"}})
    yield offline_runtime(migrated_sqlite_url, credentials, api_key="sk_test_shell")
    set_runtime(None)


