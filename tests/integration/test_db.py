"""Migrations and a repository round-trip on SQLite and PostgreSQL; models match migrations."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from db.migrate import current_revision, head_revision, is_at_head, upgrade
from db.models import Base, Dispute, FraudWarning
from db.session import UnitOfWork, get_engine


def test_upgrade_creates_every_table_at_head(database_url: str) -> None:
    upgrade(database_url)
    assert is_at_head(database_url) and current_revision(database_url) == head_revision()
    tables = set(inspect(get_engine(database_url)).get_table_names())
    assert set(Base.metadata.tables) <= tables
    upgrade(database_url)  # idempotent


def test_models_match_the_migrations(database_url: str) -> None:
    upgrade(database_url)
    with get_engine(database_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ; run `python -m db.migrate`: {diff}"


def test_round_trip_keeps_money_as_integers_and_times_as_utc(migrated_url: str) -> None:
    due_by = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)
    with UnitOfWork(migrated_url) as uow:
        uow.session.add(Dispute(id="dp_rt", amount=123456789012, currency="usd", status="needs_response",
                                due_by=due_by, raw={"nested": {"ok": [1, 2]}}))
        uow.session.add(FraudWarning(id="issfr_rt", charge_id="ch_1", amount=5000, currency="eur"))
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        dispute = uow.session.get(Dispute, "dp_rt")
        assert dispute is not None
        assert dispute.amount == 123456789012 and isinstance(dispute.amount, int)
        assert dispute.due_by == due_by and dispute.due_by.tzinfo is not None
        assert dispute.raw == {"nested": {"ok": [1, 2]}}
        efw = uow.session.execute(select(FraudWarning)).scalar_one()
        assert (efw.status, efw.currency) == ("open", "eur")


def test_leaving_without_commit_rolls_back(migrated_url: str) -> None:
    with UnitOfWork(migrated_url) as uow:
        uow.session.add(FraudWarning(id="issfr_x", charge_id="ch_x"))
        uow.session.flush()
    with UnitOfWork(migrated_url) as uow:
        assert uow.session.get(FraudWarning, "issfr_x") is None


def test_sqlite_runs_with_wal_and_foreign_keys(migrated_sqlite_url: str) -> None:
    with get_engine(migrated_sqlite_url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
