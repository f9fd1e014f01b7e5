"""Failed sign-ins lock out per account and per client (issue 16, item 5).

The count lives in the audit log, so it holds across console replicas (two
engines on one database here) on SQLite and PostgreSQL; every attempt leaves a
row and no row carries the password.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog
from db.models.base import utcnow
from db.session import UnitOfWork, make_engine
from demo import write_credentials_file
from services import sign_in
from services.config import Settings, load_settings
from tests.conftest import ADMIN_EMAIL, REPO_ROOT, VIEWER_EMAIL, page_text

PASSWORD = "right-horse-battery"
WRONG = "wrong-password-guess"


@pytest.fixture
def setup(migrated_url: str, tmp_path: Path) -> tuple[Settings, sign_in.Credentials]:
    path = tmp_path / "credentials.yaml"
    write_credentials_file(path, {ADMIN_EMAIL: {"name": "Ada", "password": PASSWORD},
                                  VIEWER_EMAIL: {"name": "Vic", "password": PASSWORD},
                                  "other@example.com": {"name": "Oz", "password": PASSWORD}})
    settings = load_settings({"DATABASE_URL": migrated_url, "ADMIN_EMAIL_DOMAIN": "example.com",
                              "AUTH_CREDENTIALS_FILE": str(path)}, env_file=None)
    credentials = sign_in.load_credentials(settings)
    assert credentials is not None
    return settings, credentials


def _rows(settings: Settings) -> list[AuditLog]:
    with UnitOfWork(settings.database_url) as uow:
        return list(uow.session.scalars(select(AuditLog).where(AuditLog.action.like("sign_in.%"))
                                        .order_by(AuditLog.id)))


def _attempt(settings: Settings, credentials: sign_in.Credentials, password: str, *,
             username: str = ADMIN_EMAIL, client: str | None = "198.51.100.1", now: Any = None,
             replica: Any = None) -> sign_in.SignInOutcome:
    uow = UnitOfWork(replica if replica is not None else settings.database_url)
    return sign_in.attempt_sign_in(uow, settings, credentials, username=username, password=password,
                                   client=client, now=now)


def test_five_failures_lock_the_account_even_for_the_right_password(setup: Any) -> None:
    settings, credentials = setup
    start = utcnow()
    for _ in range(sign_in.MAX_FAILED_SIGN_INS):
        assert _attempt(settings, credentials, WRONG, now=start).status == "failed"
    locked = _attempt(settings, credentials, PASSWORD, now=start + timedelta(minutes=1))
    assert locked.status == "locked" and locked.email is None
    assert locked.message == sign_in.LOCKED_MESSAGE
    # From another client too: the account itself is locked.
    assert _attempt(settings, credentials, PASSWORD, client="192.0.2.9",
                    now=start + timedelta(minutes=2)).status == "locked"
    # The cool-down runs from the fifth failure as stored (rows carry the real clock); after it the
    # right password works again.
    fifth = max(r.at for r in _rows(settings) if r.action == sign_in.ACTION_FAILED)
    end = fifth + sign_in.LOCKOUT_COOL_DOWN
    assert _attempt(settings, credentials, PASSWORD, now=end - timedelta(seconds=1)).status == "locked"
    assert _attempt(settings, credentials, PASSWORD, now=end + timedelta(seconds=1)).status == "signed_in"

    rows = _rows(settings)
    assert [r.action for r in rows] == [sign_in.ACTION_FAILED] * 5 + [sign_in.ACTION_LOCKED] * 3 + [
        sign_in.ACTION_SIGNED_IN]
    assert all(r.actor == ADMIN_EMAIL for r in rows)
    assert [r.result for r in rows] == ["denied"] * 8 + ["ok"]
    assert rows[0].target == "client:198.51.100.1" and rows[0].details["client"] == "198.51.100.1"
    dumped = json.dumps([[r.actor, r.target, r.details, r.error] for r in rows])
    assert PASSWORD not in dumped and WRONG not in dumped


def test_four_failures_do_not_lock_and_old_failures_expire(setup: Any) -> None:
    settings, credentials = setup
    start = utcnow()
    for _ in range(sign_in.MAX_FAILED_SIGN_INS - 1):
        _attempt(settings, credentials, WRONG, now=start)
    assert _attempt(settings, credentials, PASSWORD, now=start).status == "signed_in"
    # Failures spread wider than the window never reach the limit.
    spread = start + timedelta(hours=2)
    for i in range(sign_in.MAX_FAILED_SIGN_INS * 2):
        assert sign_in.locked_until([spread + i * sign_in.FAILURE_WINDOW / 4]) is None
    times = [spread + i * (sign_in.FAILURE_WINDOW / 3) for i in range(sign_in.MAX_FAILED_SIGN_INS)]
    assert sign_in.locked_until(times) is None
    times = [spread + i * timedelta(minutes=3) for i in range(sign_in.MAX_FAILED_SIGN_INS)]
    assert sign_in.locked_until(times) == times[-1] + sign_in.LOCKOUT_COOL_DOWN


def test_failures_lock_the_client_across_accounts(setup: Any) -> None:
    settings, credentials = setup
    start = utcnow()
    for i in range(sign_in.MAX_FAILED_SIGN_INS):
        assert _attempt(settings, credentials, WRONG, username=f"guess{i}@example.com",
                        client="203.0.113.50", now=start).status == "failed"
    assert _attempt(settings, credentials, PASSWORD, client="203.0.113.50", now=start).status == "locked"
    # The same account from a different client is fine: only that client is locked.
    assert _attempt(settings, credentials, PASSWORD, client="203.0.113.51", now=start).status == "signed_in"


def test_lockout_is_shared_across_replicas(setup: Any) -> None:
    """Two console replicas = two engines on the same database, nothing else shared."""
    settings, credentials = setup
    replica_a, replica_b = make_engine(settings.database_url), make_engine(settings.database_url)
    start = utcnow()
    for i in range(sign_in.MAX_FAILED_SIGN_INS):
        _attempt(settings, credentials, WRONG, replica=replica_a if i % 2 else replica_b, now=start)
    assert _attempt(settings, credentials, PASSWORD, replica=replica_a, now=start).status == "locked"
    assert _attempt(settings, credentials, PASSWORD, replica=replica_b, now=start).status == "locked"
    replica_a.dispose()
    replica_b.dispose()


def test_people_without_access_and_unknown_accounts_are_audited(setup: Any) -> None:
    settings, credentials = setup
    outsider = _attempt(settings, credentials, PASSWORD, username=VIEWER_EMAIL)
    assert outsider.status == "no_access" and outsider.email == VIEWER_EMAIL
    unknown = _attempt(settings, credentials, PASSWORD, username="nobody@example.com")
    assert unknown.status == "failed"
    rows = _rows(settings)
    assert [(r.action, r.actor, r.result) for r in rows] == [
        (sign_in.ACTION_NO_ACCESS, VIEWER_EMAIL, "denied"),
        (sign_in.ACTION_FAILED, "nobody@example.com", "denied"),
    ]
    assert rows[1].details["known_account"] is False


def test_case_and_spacing_do_not_dodge_the_account_count(setup: Any) -> None:
    settings, credentials = setup
    start = utcnow()
    for variant in ("ADMIN@example.com", " admin@example.com", "Admin@Example.COM", "admin@EXAMPLE.com",
                    "admin@example.com "):
        assert _attempt(settings, credentials, WRONG, username=variant, client=None, now=start).status == "failed"
    assert _attempt(settings, credentials, PASSWORD, client="192.0.2.200", now=start).status == "locked"


# --- the sign-in page ----------------------------------------------------------------------
@pytest.fixture
def console(setup: Any) -> Iterator[Settings]:
    from services.runtime import Runtime, set_runtime

    settings, _ = setup
    set_runtime(Runtime(settings))
    yield settings
    set_runtime(None)


def _page_attempt(password: str) -> Any:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=30)
    at.run()
    at.text_input[0].input(ADMIN_EMAIL)
    at.text_input[1].input(password)
    at.button[0].click()
    at.run()
    return at


def test_sign_in_page_locks_out_after_five_wrong_passwords(console: Settings,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(sign_in.MAX_FAILED_SIGN_INS):
        at = _page_attempt(WRONG)
        assert "identity" not in at.session_state and "incorrect" in page_text(at)
    at = _page_attempt(PASSWORD)
    assert "identity" not in at.session_state
    assert sign_in.LOCKED_MESSAGE in page_text(at)

    later = max(r.at for r in _rows(console)) + sign_in.LOCKOUT_COOL_DOWN + timedelta(seconds=1)
    monkeypatch.setattr(sign_in, "utcnow", lambda: later)
    at = _page_attempt(PASSWORD)
    at.run()
    assert at.session_state["identity"].email == ADMIN_EMAIL
    actions = [r.action for r in _rows(console)]
    assert actions == [sign_in.ACTION_FAILED] * 5 + [sign_in.ACTION_LOCKED, sign_in.ACTION_SIGNED_IN]


def test_client_address_behind_a_trusted_proxy(setup: Any) -> None:
    settings, _ = setup
    assert sign_in.client_address("10.0.0.5", {"X-Forwarded-For": "1.2.3.4"}, settings) == "10.0.0.5"
    proxied = settings.model_copy(update={"auth_client_address_header": "X-Forwarded-For"})
    # The proxy appends the real client last; what the client itself sent first is ignored.
    headers = {"x-forwarded-for": "6.6.6.6, 198.51.100.23"}
    assert sign_in.client_address("10.0.0.5", headers, proxied) == "198.51.100.23"
    assert sign_in.client_address("10.0.0.5", {}, proxied) == "10.0.0.5"


@pytest.mark.parametrize("stored", ["", "plain-text-password", "$2b$12$not-a-real-bcrypt-hash"])
def test_an_account_without_a_bcrypt_hash_never_signs_in(setup: Any, stored: str) -> None:
    settings, _ = setup
    credentials = sign_in.Credentials((sign_in.Account(ADMIN_EMAIL, ADMIN_EMAIL, "Ada", stored),))
    for guess in ("", "plain-text-password", stored, "not-a-password"):
        assert _attempt(settings, credentials, guess).status == "failed"
