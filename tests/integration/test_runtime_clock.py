"""The Runtime's clock is the one services read the time from where it is passed in: a
recorded preflight run is stamped with it (page, CLI and audit row agree)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from db.models import AuditLog
from services.preflight_record import RUN_ACTION, last_run, run_and_record
from services.runtime import Runtime, utc_now
from tests.integration.golive_fixtures import FakePreflightGateway, golive_settings

FIXED = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


def test_the_default_clock_is_aware_utc() -> None:
    now = utc_now()
    assert now.tzinfo is UTC and abs((datetime.now(UTC) - now).total_seconds()) < 5


def test_a_recorded_preflight_run_is_stamped_by_the_runtime_clock(migrated_url: str) -> None:
    runtime = Runtime(golive_settings(migrated_url), clock=lambda: FIXED)
    runtime.__dict__["gateway"] = FakePreflightGateway()  # the cached_property's slot
    results, ran_at, recorded = run_and_record(runtime, actor="ops@example.com")
    assert recorded and ran_at == FIXED and results
    stored = last_run(runtime.uow())
    assert stored is not None and stored[0] == FIXED and stored[1] == "ops@example.com"
    with runtime.uow() as uow:
        row = uow.session.execute(select(AuditLog).where(AuditLog.action == RUN_ACTION)).scalar_one()
        assert row.details["ran_at"] == FIXED.isoformat()
