"""Refusals of outside requests are all audited, without a row per request."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from db.models import AuditLog
from db.session import UnitOfWork
from services.refusal_audit import MANY_CLIENTS, RefusalAudit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rows(url: str) -> list[tuple[str | None, dict[str, Any]]]:
    with UnitOfWork(url) as uow:
        return [(row.target, dict(row.details)) for row in
                uow.session.execute(select(AuditLog).order_by(AuditLog.id)).scalars()]


def _audit(url: str, **kwargs: Any) -> tuple[RefusalAudit, Clock]:
    clock = Clock()
    return RefusalAudit(lambda: UnitOfWork(url), clock=clock, **kwargs), clock


def test_a_flood_writes_one_row_and_a_count(migrated_url: str) -> None:
    auditor, clock = _audit(migrated_url, window_seconds=60)
    for _ in range(1000):
        auditor.refuse(action="sign_in.session_refused", target="ip:203.0.113.9", reason="cross-origin handover")
    assert _rows(migrated_url) == [("ip:203.0.113.9", {"reason": "cross-origin handover"})]
    assert auditor.flush() == 0  # the window is still open: nothing more is written yet
    clock.now += 60
    assert auditor.flush() == 999
    rows = _rows(migrated_url)
    assert len(rows) == 2 and rows[1][1]["repeats"] == 999
    assert 1 + sum(d.get("repeats", 0) for _, d in rows) == 1000  # every refusal is accounted for


def test_a_refusal_after_the_window_opens_a_new_one_and_writes_the_old_count(migrated_url: str) -> None:
    auditor, clock = _audit(migrated_url, window_seconds=60)
    for _ in range(3):
        auditor.refuse(action="sign_in.sign_out", target="ip:a", reason="cross-origin sign-out")
    clock.now += 61
    auditor.refuse(action="sign_in.sign_out", target="ip:a", reason="cross-origin sign-out")
    details = [d for _, d in _rows(migrated_url)]
    assert details == [{"reason": "cross-origin sign-out"},
                       {"reason": "cross-origin sign-out", "repeats": 2, "window_seconds": 60},
                       {"reason": "cross-origin sign-out"}]


def test_different_clients_and_reasons_are_kept_apart_and_memory_is_bounded(migrated_url: str) -> None:
    auditor, _ = _audit(migrated_url, max_kinds=3)
    for client in ("ip:1", "ip:2", "ip:3", "ip:4", "ip:5"):
        auditor.refuse(action="sign_in.session_refused", target=client, reason="cross-origin handover")
        auditor.refuse(action="sign_in.session_refused", target=client, reason="cross-origin handover")
    assert [t for t, _ in _rows(migrated_url)] == ["ip:1", "ip:2", "ip:3", MANY_CLIENTS]
    assert auditor.flush(everything=True) == 6  # ip:1..3 one repeat each, "many clients" 3 more
    assert len(auditor._windows) == 0


def test_a_count_the_database_refuses_is_kept_for_the_next_flush(migrated_url: str) -> None:
    broken = {"on": False}

    def uow() -> UnitOfWork:
        if broken["on"]:
            raise RuntimeError("database down")
        return UnitOfWork(migrated_url)

    clock = Clock()
    auditor = RefusalAudit(uow, clock=clock)
    auditor.refuse(action="a", target="ip:1", reason="r")
    auditor.refuse(action="a", target="ip:1", reason="r")
    broken["on"] = True
    assert auditor.flush(everything=True) == 0
    broken["on"] = False
    assert auditor.flush(everything=True) == 1
    assert [d.get("repeats") for _, d in _rows(migrated_url)] == [None, 1]


@pytest.mark.parametrize("route", ["/auth/session", "/auth/sign-out"])
def test_the_console_routes_refuse_a_flood_with_403_and_bounded_rows(route: str, migrated_sqlite_url: str,
                                                                     tmp_path: Any) -> None:
    from console_routes import ROUTES
    from services.runtime import set_runtime
    from tests.integration.test_web_sessions import _runtime

    rt = _runtime(migrated_sqlite_url, tmp_path)
    set_runtime(rt)
    try:
        http = TestClient(Starlette(routes=ROUTES), base_url="http://console.test")
        answers = {http.post(route, data={"token": "x"}, headers={"Origin": "https://evil.example"}).status_code
                   for _ in range(200)}
        assert answers == {403}
        assert len(_rows(migrated_sqlite_url)) == 1
        assert rt.refusal_audit.flush(everything=True) == 199
        assert len(_rows(migrated_sqlite_url)) == 2
    finally:
        rt.refusal_audit.close()
        set_runtime(None)
