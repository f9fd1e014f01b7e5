"""EFW decisions against the emulator: refund exactly once and only when safe, ignore with a
reason, reopen, bulk with a failing row, the funnel. On SQLite and PostgreSQL where it matters."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog, FraudWarning
from db.models.base import utcnow
from services import efw_funnel
from services import fraud_warnings as efw
from services.sync import run_sync
from tests.conftest import ADMIN_EMAIL, EmulatorHandle


def _warning(runtime: Any, amount: int = 7000, email: str = "fraud@example.io") -> tuple[str, str]:
    gateway = runtime.gateway
    customer = gateway.create_customer({"email": email}, idempotency_key=f"cus-{email}-{amount}-{id(runtime)}")
    intent = gateway.client.v1.payment_intents.create({"amount": amount, "currency": "usd", "customer": customer["id"],
                                                       "payment_method": "pm_card_createIssuerFraudRecord",
                                                       "confirm": True})
    warning = next(gateway.list_early_fraud_warnings(charge=intent.latest_charge))
    return warning["id"], str(intent.latest_charge)


def _sync(runtime: Any) -> None:
    run_sync(runtime, since=None, days=30)


def _refunds(emulator: EmulatorHandle) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if r["method"] == "POST" and r["path"] == "/v1/refunds"]


def _audits(runtime: Any, action: str) -> list[AuditLog]:
    with runtime.uow() as uow:
        return list(uow.session.execute(select(AuditLog).where(AuditLog.action == action)).scalars())


def _refund(runtime: Any, efw_id: str, amount: int) -> efw.RefundResult:
    return efw.refund_fraud_warning(efw_id, confirmed_amount=amount, actor=ADMIN_EMAIL, settings=runtime.settings,
                                    uow=runtime.uow(), gateway=runtime.gateway)


def test_refund_sends_the_remaining_amount_once(runtime_factory: Any, database_url: str,
                                                emulator: EmulatorHandle) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    efw_id, charge_id = _warning(runtime)
    runtime.gateway.create_refund({"charge": charge_id, "amount": 2000}, idempotency_key="partial-1")
    _sync(runtime)
    row = efw.get_fraud_warning(runtime.uow(), efw_id)
    assert row is not None and row.remaining == 5000 and row.status == "open"
    emulator.clear_requests()
    result = _refund(runtime, efw_id, 5000)
    assert result.amount == 5000
    sent = _refunds(emulator)
    assert len(sent) == 1 and sent[0]["idempotency_key"] == f"refund:efw:{efw_id}"
    refunds = runtime.gateway.client.v1.refunds.list({"charge": charge_id}).data
    assert sorted(r.amount for r in refunds) == [2000, 5000] and {r.reason for r in refunds} >= {"fraudulent"}
    stored = efw.get_fraud_warning(runtime.uow(), efw_id)
    assert stored is not None and (stored.status, stored.actor, stored.refund_id) == ("refunded", ADMIN_EMAIL,
                                                                                      result.refund_id)
    [entry] = _audits(runtime, "efw.refund")
    assert (entry.result, entry.idempotency_key) == ("ok", f"refund:efw:{efw_id}")
    # Stripe's later radar.early_fraud_warning.updated (actionable: false) keeps the decision.
    _sync(runtime)
    again = efw.get_fraud_warning(runtime.uow(), efw_id)
    assert again is not None and again.status == "refunded" and again.actionable is False


def test_50_concurrent_refunds_make_one(runtime_factory: Any, database_url: str, emulator: EmulatorHandle) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    efw_id, charge_id = _warning(runtime)
    _sync(runtime)
    emulator.clear_requests()
    outcomes: list[str] = []
    barrier = threading.Barrier(50)

    def click() -> None:
        barrier.wait()
        try:
            _refund(runtime, efw_id, 7000)
            outcomes.append("ok")
        except efw.EfwActionError:
            outcomes.append("refused")

    threads = [threading.Thread(target=click) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 1
    assert len(_refunds(emulator)) == 1
    assert len(runtime.gateway.client.v1.refunds.list({"charge": charge_id}).data) == 1
    assert [a.result for a in _audits(runtime, "efw.refund")] == ["ok"]


@pytest.mark.parametrize("situation", ["disputed", "already_refunded", "not_actionable", "amount_changed"])
def test_refusals_send_nothing(runtime: Any, emulator: EmulatorHandle, situation: str) -> None:
    efw_id, charge_id = _warning(runtime)
    _sync(runtime)
    confirmed = 7000
    if situation == "disputed":
        emulator.admin(f"charges/{charge_id}/dispute")
    elif situation == "already_refunded":
        runtime.gateway.create_refund({"charge": charge_id}, idempotency_key="elsewhere")
    elif situation == "not_actionable":
        emulator.admin(f"early_fraud_warnings/{efw_id}/set", {"actionable": False})
    else:
        runtime.gateway.create_refund({"charge": charge_id, "amount": 100}, idempotency_key="partial-elsewhere")
    emulator.clear_requests()
    with pytest.raises(efw.EfwActionError) as caught:
        _refund(runtime, efw_id, confirmed)
    expected = {"disputed": "disputed", "already_refunded": "already fully refunded",
                "not_actionable": "no longer marks this warning actionable", "amount_changed": "amount changed"}
    assert expected[situation] in caught.value.message
    assert _refunds(emulator) == []
    row = efw.get_fraud_warning(runtime.uow(), efw_id)
    assert row is not None and row.status == "open"  # nothing changed locally
    assert [a.result for a in _audits(runtime, "efw.refund")] == ["refused"]


def test_a_stripe_error_leaves_it_open(runtime: Any, emulator: EmulatorHandle) -> None:
    efw_id, _ = _warning(runtime)
    _sync(runtime)
    emulator.admin("faults", {"rate_500": 1.0})
    with pytest.raises(efw.EfwActionError) as caught:
        _refund(runtime, efw_id, 7000)
    emulator.admin("faults", {"rate_500": 0.0})
    assert "Stripe" in caught.value.message or "error" in caught.value.message.lower()
    row = efw.get_fraud_warning(runtime.uow(), efw_id)
    assert row is not None and row.status == "open"
    assert _refund(runtime, efw_id, 7000).amount == 7000  # and it can be retried


def test_ignore_needs_a_reason_and_reopen_undoes_it(runtime: Any) -> None:
    efw_id, _ = _warning(runtime)
    _sync(runtime)
    for reason in ("", "   ", "too short"):
        with pytest.raises(efw.EfwActionError):
            efw.ignore_fraud_warning(efw_id, reason=reason, actor=ADMIN_EMAIL, settings=runtime.settings,
                                     uow=runtime.uow())
    assert efw.get_fraud_warning(runtime.uow(), efw_id).status == "open"  # type: ignore[union-attr]
    efw.ignore_fraud_warning(efw_id, reason="Known customer, verified by phone", actor=ADMIN_EMAIL,
                             settings=runtime.settings, uow=runtime.uow())
    row = efw.get_fraud_warning(runtime.uow(), efw_id)
    assert row is not None and (row.status, row.reason, row.actor) == ("ignored", "Known customer, verified by phone",
                                                                       ADMIN_EMAIL)
    with pytest.raises(efw.EfwActionError):
        _refund(runtime, efw_id, 7000)  # decided already
    efw.reopen_fraud_warning(efw_id, actor=ADMIN_EMAIL, settings=runtime.settings, uow=runtime.uow())
    assert efw.get_fraud_warning(runtime.uow(), efw_id).status == "open"  # type: ignore[union-attr]
    with pytest.raises(efw.EfwActionError, match="Only ignored"):
        efw.reopen_fraud_warning(efw_id, actor=ADMIN_EMAIL, settings=runtime.settings, uow=runtime.uow())
    # Each attempt leaves exactly one audit row: three refused reasons, the ignore, the reopen, the refused reopen.
    assert [a.result for a in _audits(runtime, "efw.ignore")] == ["refused", "refused", "refused", "ok"]
    assert [a.result for a in _audits(runtime, "efw.reopen")] == ["ok", "refused"]
    assert all(a.actor == ADMIN_EMAIL and a.target == efw_id
               for a in _audits(runtime, "efw.ignore") + _audits(runtime, "efw.reopen"))


def test_funnel_counts_each_warning_once_and_p90_is_nearest_rank(runtime_factory: Any, database_url: str) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    start = utcnow() - timedelta(hours=30)
    with runtime.uow() as uow:
        # Identical apart from their ids: both must be counted.
        for i in range(10):
            uow.session.add(FraudWarning(id=f"issfr_same{i}", charge_id=f"ch_same{i}", amount=500, currency="usd",
                                         actionable=True, created=start, status="ignored", action="ignore",
                                         actor=ADMIN_EMAIL, reason="checked by phone",
                                         decided_at=start + timedelta(hours=i + 1)))
        uow.commit()
    result = efw_funnel.funnel(runtime.uow(), since=start - timedelta(minutes=1), until=utcnow())
    assert (result.total, result.ignored, result.open) == (10, 10, 0)
    assert (result.hours_to_decision_median, result.hours_to_decision_p90) == (5.5, 9.0)


def test_bulk_refund_continues_past_a_failing_row(runtime: Any, emulator: EmulatorHandle) -> None:
    first, _ = _warning(runtime, 3000, "a@example.io")
    broken, broken_charge = _warning(runtime, 4000, "b@example.io")
    last, _ = _warning(runtime, 5000, "c@example.io")
    _sync(runtime)
    emulator.admin(f"charges/{broken_charge}/dispute")
    progress: list[tuple[int, int]] = []
    outcomes = efw.bulk_refund({first: 3000, broken: 4000, last: 5000}, actor=ADMIN_EMAIL, settings=runtime.settings,
                               uow=runtime.uow(), gateway=runtime.gateway,
                               progress=lambda done, total: progress.append((done, total)))
    assert [(o.efw_id, o.ok) for o in outcomes] == [(first, True), (broken, False), (last, True)]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    statuses = {r.id: r.status for r in efw.list_queue(runtime.uow(), efw.EfwFilter(statuses=())).rows}
    assert statuses == {first: "refunded", broken: "open", last: "refunded"}


def test_queue_order_counts_and_funnel(runtime_factory: Any, database_url: str, emulator: EmulatorHandle) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    refunded, _ = _warning(runtime, 1000, "r@example.io")
    ignored, _ = _warning(runtime, 2000, "i@example.io")
    disputed, disputed_charge = _warning(runtime, 3000, "d@example.io")
    still_open, _ = _warning(runtime, 4000, "o@example.io")
    emulator.admin(f"charges/{disputed_charge}/dispute")
    _sync(runtime)
    queue = efw.list_queue(runtime.uow(), efw.EfwFilter())
    # Open and actionable first (these were created in the same second, so their order is a tie).
    assert {r.id for r in queue.rows[:3]} == {refunded, ignored, still_open}
    assert queue.rows[-1].id == disputed and queue.rows[-1].dispute_id is not None
    # "Open" means something can still be done: the disputed charge is counted apart.
    assert (queue.open_count, queue.actionable_open_count, queue.at_risk) == (3, 3, {"usd": 7000})
    assert (queue.disputed, queue.resolved_by_refund) == (1, 0)
    assert queue.rows[-1].shown_status == "disputed"
    _refund(runtime, refunded, 1000)
    efw.ignore_fraud_warning(ignored, reason="Internal test account", actor=ADMIN_EMAIL, settings=runtime.settings,
                             uow=runtime.uow())
    dispute_id = next(runtime.gateway.list_disputes(charge=disputed_charge))["id"]
    emulator.admin(f"disputes/{dispute_id}/set", {"status": "lost"})
    _sync(runtime)
    result = efw_funnel.funnel(runtime.uow(), since=utcnow() - timedelta(days=1), until=utcnow() + timedelta(minutes=1))
    # The disputed warning is not "still open": as on the queue's tiles, it is answered as a dispute.
    assert (result.total, result.refunded, result.ignored, result.open, result.open_disputed) == (4, 1, 1, 1, 1)
    assert (result.became_disputes, result.disputes_lost) == (1, 1)
    assert result.dispute_cost == {"usd": 3000 + efw_funnel.DISPUTE_FEE_MINOR_UNITS}
    assert result.hours_to_decision_median is not None
    with runtime.uow() as uow:
        assert uow.session.get(FraudWarning, refunded).decided_at is not None


def test_open_means_actionable_refunded_and_disputed_charges_are_not_at_risk(
    runtime_factory: Any, database_url: str, emulator: EmulatorHandle
) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    refunded_elsewhere, refunded_charge = _warning(runtime, 2500, "refunded@example.io")
    disputed, disputed_charge = _warning(runtime, 3500, "disputed@example.io")
    live, _ = _warning(runtime, 4500, "live@example.io")
    # Refunded in the Dashboard and disputed by the cardholder, not through the console.
    runtime.gateway.create_refund({"charge": refunded_charge}, idempotency_key=f"dash-refund:{refunded_charge}")
    emulator.admin(f"charges/{disputed_charge}/dispute")
    _sync(runtime)
    queue = efw.list_queue(runtime.uow(), efw.EfwFilter())
    assert (queue.open_count, queue.actionable_open_count, queue.at_risk) == (1, 1, {"usd": 4500})
    assert (queue.resolved_by_refund, queue.disputed) == (1, 1)
    shown = {r.id: r.shown_status for r in queue.rows}
    assert shown == {live: "open", refunded_elsewhere: "resolved by refund", disputed: "disputed"}
    assert queue.rows[0].id == live  # the one that can still be refunded comes first
    with runtime.uow() as uow:  # the stored decision is untouched: nobody decided these
        stored = {w.id: w.status for w in uow.session.execute(select(FraudWarning)).scalars()}
    assert stored == {refunded_elsewhere: "open", disputed: "open", live: "open"}
