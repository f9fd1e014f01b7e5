"""The repositories' queries with edge cases, on SQLite and PostgreSQL: prefix ranges and LIKE
escaping in search, amounts by currency exponent, run filters by trigger and result, the
conditional writes of app_settings and worker leases."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from db.models import Charge, Customer, Dispute, ReconcileAction, ReconcileRun
from db.models.base import utcnow
from db.repositories import customers, leases, reconciliation, settings
from db.session import UnitOfWork
from services.money import THREE_DECIMAL, ZERO_DECIMAL


def _customers(url: str) -> None:
    with UnitOfWork(url) as uow:
        uow.session.add_all([
            Customer(id="cus_a", email="ada@example.com", name="Ada 100% Lovelace"),
            Customer(id="cus_b", email="ada.b@example.com", name="Ada_Byron"),
            Customer(id="cus_c", email="adb@example.com", name="Adam"),
            Customer(id="cus_d", email="Ada@Mixed.io", name="Mixed"),
        ])
        uow.commit()


def test_email_prefix_is_a_range_that_stops_at_the_next_prefix(migrated_url: str) -> None:
    _customers(migrated_url)
    with UnitOfWork(migrated_url) as uow:
        assert [c.id for c in customers.customers_by_email_prefix(uow, "ada", limit=10)] == ["cus_b", "cus_a"]
        assert [c.id for c in customers.customers_by_email_prefix(uow, "ada@", limit=10)] == ["cus_a"]
        # The range compares as stored: a mixed-case address needs the query as typed.
        assert [c.id for c in customers.customers_by_email_prefix(uow, "Ada@", limit=10)] == ["cus_d"]
        assert len(customers.customers_by_email_prefix(uow, "ad", limit=2)) == 2  # bounded


def test_name_search_treats_like_wildcards_as_text(migrated_url: str) -> None:
    _customers(migrated_url)
    with UnitOfWork(migrated_url) as uow:
        assert [c.id for c in customers.customers_by_name(uow, "100%", limit=10)] == ["cus_a"]
        assert [c.id for c in customers.customers_by_name(uow, "a_b", limit=10)] == ["cus_b"]
        assert {c.id for c in customers.customers_by_name(uow, "ADA", limit=10)} == {"cus_a", "cus_b", "cus_c"}


def test_amounts_match_minor_units_by_currency_exponent(migrated_url: str) -> None:
    with UnitOfWork(migrated_url) as uow:
        uow.session.add_all([
            Charge(id="ch_usd", amount=2900, currency="usd", created=utcnow()),
            Charge(id="ch_jpy", amount=29, currency="JPY", created=utcnow()),
            Charge(id="ch_jpy_big", amount=2900, currency="jpy", created=utcnow()),
            Charge(id="ch_kwd", amount=29000, currency="kwd", created=utcnow()),
            Dispute(id="dp_usd", charge_id="ch_usd", amount=2900, currency="usd", status="needs_response"),
        ])
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        charges, disputes = customers.charges_and_disputes_by_amount(
            uow, Decimal("29.00"), zero_decimal=ZERO_DECIMAL, three_decimal=THREE_DECIMAL, limit=10)
        assert {c.id for c in charges} == {"ch_usd", "ch_jpy", "ch_kwd"}  # never 2,900 JPY
        assert [d.id for d in disputes] == ["dp_usd"]
        fractional, _ = customers.charges_and_disputes_by_amount(
            uow, Decimal("29.5"), zero_decimal=ZERO_DECIMAL, three_decimal=THREE_DECIMAL, limit=10)
        assert fractional == []  # 29.5 is no whole number of yen, and no row holds 2950 cents


def test_run_reads_leave_out_a_trigger_and_filter_results(migrated_url: str) -> None:
    now = utcnow()
    with UnitOfWork(migrated_url) as uow:
        runs = [ReconcileRun(started_at=now, finished_at=now, mode="apply", trigger=trigger)
                for trigger in ("cron", "qa", "cron")]
        runs.append(ReconcileRun(started_at=now, mode="apply", trigger="cron"))  # still running
        uow.session.add_all(runs)
        uow.session.flush()
        reconciliation.add_actions(uow, [
            ReconcileAction(run_id=runs[2].id, stripe_subscription_id=f"sub_{n}", kind=kind, result=result)
            for n, (kind, result) in enumerate([("drift_a", "reported"), ("drift_a", "dismissed"),
                                                ("lost_customer", "reported"), ("drift_b", "fixed")])
        ])
        uow.commit()
        ids = [run.id for run in runs]
    with UnitOfWork(migrated_url) as uow:
        assert [r.id for r in reconciliation.finished_runs(uow, mode="apply", skip_trigger="qa", limit=5)] == [
            ids[2], ids[0]]
        assert [r.id for r in reconciliation.recent_runs(uow, trigger="qa", only=True, limit=5)] == [ids[1]]
        assert [r.id for r in reconciliation.recent_runs(uow, trigger="qa", only=False, limit=5)] == [
            ids[3], ids[2], ids[0]]
        kinds = ("drift_a", "drift_b")
        assert [a.result for a in reconciliation.actions_of_run(uow, ids[2], kinds=kinds)] == [
            "reported", "dismissed", "fixed"]
        assert [a.result for a in reconciliation.actions_of_run(uow, ids[2], kinds=kinds,
                                                                excluding=("dismissed",))] == ["reported", "fixed"]
        assert [a.kind for a in reconciliation.actions_of_run(uow, ids[2], results=("reported",))] == [
            "drift_a", "lost_customer"]


def test_setting_delete_is_conditional(migrated_url: str) -> None:
    with UnitOfWork(migrated_url) as uow:
        settings.add(uow, "web_handover:x", {"session_id": "s"})
        settings.add(uow, "web_session:y", {})
        settings.add(uow, "switch:processing", {"paused": False})
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        assert {row.key for row in settings.with_prefixes(uow, "web_session:", "web_handover:")} == {
            "web_handover:x", "web_session:y"}
        assert settings.delete_key(uow, "web_handover:x") == 1
        assert settings.delete_key(uow, "web_handover:x") == 0  # the second of two racing callers
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        assert set(settings.many(uow, ["web_handover:x", "switch:processing", "nope"])) == {"switch:processing"}


def test_a_lease_is_taken_over_only_once_expired(migrated_url: str) -> None:
    now = utcnow()
    with UnitOfWork(migrated_url) as uow:
        assert not leases.take_expired(uow, "job", "w1", moment=now, expires_at=now + timedelta(seconds=60))
        assert leases.insert(uow, "job", "w1", moment=now, expires_at=now + timedelta(seconds=60))
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        assert not leases.insert(uow, "job", "w2", moment=now, expires_at=now + timedelta(seconds=60))
    with UnitOfWork(migrated_url) as uow:
        assert not leases.take_expired(uow, "job", "w2", moment=now, expires_at=now + timedelta(seconds=60))
        later = now + timedelta(seconds=61)
        assert leases.take_expired(uow, "job", "w2", moment=later, expires_at=later + timedelta(seconds=60))
        assert not leases.delete_held(uow, "job", "w1")
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        lease = leases.get(uow, "job")
        assert lease is not None and lease.holder == "w2"
