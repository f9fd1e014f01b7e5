"""Radar beside an EFW, against the emulator on SQLite and PostgreSQL: the charge's Radar context,
related payments by card, email and IP; refund and block in one action (exactly one refund and one
value-list item per type under concurrent clicks), undo, block again; partial refunds with a reason;
refund history with the status refund.* events report (pending -> succeeded, succeeded -> failed)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog, FraudWarning
from services import efw_radar
from services import fraud_warnings as efw
from services.sync import run_sync
from tests.conftest import ADMIN_EMAIL, EmulatorHandle

SHARED_IP = "203.0.113.9"


def _pay(runtime: Any, customer_id: str, card: str, amount: int = 7000) -> str:
    intent = runtime.gateway.client.v1.payment_intents.create({"amount": amount, "currency": "usd",
                                                               "customer": customer_id, "payment_method": card,
                                                               "confirm": True})
    return str(intent.latest_charge)


def _customer(runtime: Any, email: str, ip: str | None = None) -> str:
    params: dict[str, Any] = {"email": email}
    if ip:
        params["metadata"] = {"ip": ip}
    return str(runtime.gateway.create_customer(params, idempotency_key=f"cus:{email}:{ip}")["id"])


def _warning_on(runtime: Any, emulator: EmulatorHandle, charge_id: str) -> str:
    return str(emulator.admin(f"charges/{charge_id}/early_fraud_warning")["id"])


def _efw(runtime: Any, email: str = "fraud@example.io", ip: str | None = SHARED_IP, amount: int = 7000) -> tuple[str,
                                                                                                                 str]:
    charge_id = _pay(runtime, _customer(runtime, email, ip), "pm_card_createIssuerFraudRecord", amount)
    warning = next(runtime.gateway.list_early_fraud_warnings(charge=charge_id))
    return str(warning["id"]), charge_id


def _sync(runtime: Any) -> None:
    run_sync(runtime, since=None, days=30)


def _ctx(runtime: Any) -> dict[str, Any]:
    return {"actor": ADMIN_EMAIL, "settings": runtime.settings, "uow": runtime.uow(), "gateway": runtime.gateway}


def _items(runtime: Any) -> dict[str, list[str]]:
    client = runtime.gateway.client
    found: dict[str, list[str]] = {}
    for value_list in client.v1.radar.value_lists.list({"limit": 100}).data:
        items = client.v1.radar.value_list_items.list({"value_list": value_list.id, "limit": 100}).data
        found[value_list.alias] = sorted(i.value for i in items)
    return found


def _audits(runtime: Any, action: str) -> list[AuditLog]:
    with runtime.uow() as uow:
        return list(uow.session.execute(select(AuditLog).where(AuditLog.action == action)
                                        .order_by(AuditLog.id)).scalars())


def test_context_and_related_payments(runtime_factory: Any, database_url: str, emulator: EmulatorHandle) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    efw_id, charge_id = _efw(runtime)
    _, same_card = _efw(runtime, email="other@example.io", ip=None)          # same test card: same fingerprint
    same_email = _pay(runtime, _customer(runtime, "fraud@example.io"), "pm_card_visa")  # a second account
    same_ip = _pay(runtime, _customer(runtime, "elsewhere@example.io", SHARED_IP), "pm_card_mastercard")
    unrelated = _pay(runtime, _customer(runtime, "clean@example.io", "198.51.100.1"), "pm_card_amex")
    _sync(runtime)

    context = efw_radar.radar_context(runtime.uow(), efw_id)
    assert context is not None and context.charge_id == charge_id
    assert (context.outcome_type, context.risk_level) == ("authorized", "elevated")
    assert context.risk_score is not None and context.seller_message == "Payment complete."
    assert (context.cvc_check, context.address_line1_check) == ("pass", None)
    assert context.check(context.address_postal_code_check) == "not provided"
    assert context.three_d_secure_result is None and context.fingerprint and context.card_last4 == "5423"
    assert (context.email, context.ip) == ("fraud@example.io", SHARED_IP)

    related = {r.charge_id: r for r in efw_radar.related_payments(runtime.uow(), efw_id)}
    assert set(related) == {same_card, same_email, same_ip}
    assert unrelated not in related
    assert related[same_card].matched_on == ("card",) and related[same_card].early_fraud_warning
    assert related[same_email].matched_on == ("email",) and related[same_email].risk_level == "normal"
    assert related[same_ip].matched_on == ("ip",) and related[same_ip].outcome_type == "authorized"


def test_refund_and_block_then_undo_and_block_again(runtime_factory: Any, database_url: str,
                                                    emulator: EmulatorHandle) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    efw_id, charge_id = _efw(runtime)
    _sync(runtime)
    fingerprint = efw_radar.radar_context(runtime.uow(), efw_id).fingerprint  # type: ignore[union-attr]
    emulator.clear_requests()
    result = efw_radar.refund_and_block(efw_id, confirmed_amount=7000, card=True, email=True, **_ctx(runtime))
    assert result.amount == 7000 and all(b.ok for b in result.blocks)
    assert _items(runtime) == {"console_blocked_card_fingerprints": [fingerprint],
                               "console_blocked_emails": ["fraud@example.io"]}
    keys = {r["idempotency_key"] for r in emulator.requests() if r["method"] == "POST"}
    assert {f"refund:efw:{efw_id}", f"block:efw:{efw_id}:card_fingerprint:1", f"block:efw:{efw_id}:email:1",
            "radar:value_list:console_blocked_card_fingerprints", "radar:value_list:console_blocked_emails"} <= keys
    assert [a.result for a in _audits(runtime, "efw.block")] == ["ok", "ok"]
    assert [a.result for a in _audits(runtime, "efw.refund_and_block")] == ["ok"]
    blocks = {b.item_type: b for b in efw_radar.blocks_for(runtime.uow(), efw_id)}
    assert {b.status for b in blocks.values()} == {"active"}

    # Undo the email block only: the item is gone at Stripe, the card stays blocked.
    assert "no longer blocked" in efw_radar.unblock(blocks["email"].id, **_ctx(runtime))
    assert _items(runtime)["console_blocked_emails"] == []
    assert _items(runtime)["console_blocked_card_fingerprints"] == [fingerprint]
    with pytest.raises(efw.EfwActionError):
        efw_radar.unblock(blocks["email"].id, **_ctx(runtime))  # undo twice: nothing to do
    # Blocking again after an undo adds a new item under a new key; the active card block is left alone.
    again = efw_radar.block_fraud_warning(efw_id, card=True, email=True, **_ctx(runtime))
    assert [(b.item_type, b.ok) for b in again] == [("card_fingerprint", False), ("email", True)]
    assert _items(runtime)["console_blocked_emails"] == ["fraud@example.io"]
    assert any(r["idempotency_key"] == f"block:efw:{efw_id}:email:2" for r in emulator.requests())
    assert [a.result for a in _audits(runtime, "efw.unblock")] == ["ok", "refused"]


def test_concurrent_refund_and_block_clicks_make_one_refund_and_one_item(
        runtime_factory: Any, database_url: str, emulator: EmulatorHandle) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    efw_id, charge_id = _efw(runtime)
    _sync(runtime)
    outcomes: list[str] = []
    barrier = threading.Barrier(12)

    def click() -> None:
        barrier.wait()
        try:
            efw_radar.refund_and_block(efw_id, confirmed_amount=7000, card=True, email=False, **_ctx(runtime))
            outcomes.append("ok")
        except efw.EfwActionError:
            outcomes.append("refused")

    threads = [threading.Thread(target=click) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 1
    assert len(runtime.gateway.client.v1.refunds.list({"charge": charge_id}).data) == 1
    assert len(_items(runtime)["console_blocked_card_fingerprints"]) == 1
    assert [a.result for a in _audits(runtime, "efw.block")] == ["ok"]
    assert len(efw_radar.blocks_for(runtime.uow(), efw_id)) == 1


def test_concurrent_block_clicks_add_one_item(runtime: Any, emulator: EmulatorHandle) -> None:
    efw_id, _ = _efw(runtime)
    _sync(runtime)
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def click() -> None:
        barrier.wait()
        results.extend(b.ok for b in efw_radar.block_fraud_warning(efw_id, card=False, email=True, **_ctx(runtime)))

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert _items(runtime) == {"console_blocked_emails": ["fraud@example.io"]}


def test_block_needs_something_to_block(runtime: Any) -> None:
    efw_id, _ = _efw(runtime)
    _sync(runtime)
    with pytest.raises(efw.EfwActionError):
        efw_radar.block_fraud_warning(efw_id, card=False, email=False, **_ctx(runtime))
    with pytest.raises(efw.EfwActionError):
        efw_radar.refund_and_block(efw_id, confirmed_amount=7000, card=False, email=False, **_ctx(runtime))
    assert [a.result for a in _audits(runtime, "efw.block")] == ["refused"]
    assert runtime.gateway.client.v1.refunds.list({"limit": 10}).data == []


def _partial(runtime: Any, efw_id: str, amount: int, remaining: int, reason: str = "requested_by_customer") -> Any:
    return efw.partial_refund_fraud_warning(efw_id, amount=amount, reason=reason, confirmed_remaining=remaining,
                                            **_ctx(runtime))


def test_partial_refunds_with_reasons_then_the_rest(runtime_factory: Any, database_url: str,
                                                    emulator: EmulatorHandle) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    efw_id, charge_id = _efw(runtime)
    _sync(runtime)
    first = _partial(runtime, efw_id, 1500, 7000)
    with pytest.raises(efw.EfwActionError) as twice:  # a late second click: the remainder has changed
        _partial(runtime, efw_id, 1500, 7000)
    assert "changed" in twice.value.message
    assert len(runtime.gateway.client.v1.refunds.list({"charge": charge_id}).data) == 1
    row = efw.get_fraud_warning(runtime.uow(), efw_id)
    assert row is not None and (row.status, row.remaining) == ("open", 5500)
    second = _partial(runtime, efw_id, 500, 5500, reason="duplicate")
    assert first.refund_id != second.refund_id
    with pytest.raises(efw.EfwActionError) as stale:
        _partial(runtime, efw_id, 100, 7000)  # confirmed against an old remainder
    assert "changed" in stale.value.message
    with pytest.raises(efw.EfwActionError):
        _partial(runtime, efw_id, 100, 5000, reason="because")
    with pytest.raises(efw.EfwActionError):
        _partial(runtime, efw_id, 6000, 5000)  # more than is left
    rest = efw.refund_fraud_warning(efw_id, confirmed_amount=5000, **_ctx(runtime))
    assert rest.amount == 5000
    history = efw.refund_history(runtime.uow(), charge_id)
    assert sorted((h.amount, h.reason, h.status, h.requested_by) for h in history) == [
        (500, "duplicate", "succeeded", ADMIN_EMAIL), (1500, "requested_by_customer", "succeeded", ADMIN_EMAIL),
        (5000, "fraudulent", "succeeded", ADMIN_EMAIL)]
    stored = efw.get_fraud_warning(runtime.uow(), efw_id)
    assert stored is not None and stored.status == "refunded"
    assert [a.result for a in _audits(runtime, "efw.partial_refund")] == ["ok", "refused", "ok", "refused",
                                                                           "refused", "refused"]


def _wait_for(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_failed_refund_is_shown_and_reopens_the_warning(runtime_factory: Any, database_url: str,
                                                        emulator: EmulatorHandle) -> None:
    runtime = runtime_factory(DATABASE_URL=database_url)
    charge_id = _pay(runtime, _customer(runtime, "late@example.io"), "pm_card_refundFail")
    efw_id = _warning_on(runtime, emulator, charge_id)
    _sync(runtime)
    result = efw.refund_fraud_warning(efw_id, confirmed_amount=7000, **_ctx(runtime))
    assert result.status == "succeeded"
    _wait_for(lambda: runtime.gateway.retrieve_refund(result.refund_id)["status"] == "failed")
    _sync(runtime)  # refund.failed and charge.refund.updated, as a webhook or a backfill brings them
    [history] = efw.refund_history(runtime.uow(), charge_id)
    assert (history.status, history.failure_reason) == ("failed", "expired_or_canceled_card")
    row = efw.get_fraud_warning(runtime.uow(), efw_id)
    assert row is not None and row.status == "open" and row.remaining == 7000
    assert "failed at Stripe" in (row.reason or "")
    # Refunding again is a new intent, so a new key (the first would replay the failed refund); Stripe
    # turned the warning unactionable when our refund went through, which does not stop this retry.
    assert runtime.gateway.retrieve_early_fraud_warning(efw_id)["actionable"] is False
    emulator.clear_requests()
    retry = efw.refund_fraud_warning(efw_id, confirmed_amount=7000, **_ctx(runtime))
    assert retry.refund_id != result.refund_id
    sent = [r for r in emulator.requests() if r["path"] == "/v1/refunds"]
    assert sent[0]["idempotency_key"] == f"refund:efw:{efw_id}:after:{result.refund_id}"


def test_pending_refund_turns_succeeded(runtime: Any, emulator: EmulatorHandle) -> None:
    charge_id = _pay(runtime, _customer(runtime, "slow@example.io"), "pm_card_pendingRefund")
    efw_id = _warning_on(runtime, emulator, charge_id)
    _sync(runtime)
    result = _partial(runtime, efw_id, 2000, 7000)
    assert result.status == "pending"
    assert [h.status for h in efw.refund_history(runtime.uow(), charge_id)] == ["pending"]
    _wait_for(lambda: runtime.gateway.retrieve_refund(result.refund_id)["status"] == "succeeded")
    _sync(runtime)
    assert [h.status for h in efw.refund_history(runtime.uow(), charge_id)] == ["succeeded"]
    with runtime.uow() as uow:
        assert uow.session.get(FraudWarning, efw_id).status == "open"


def test_migration_0006_fills_metadata_ip_from_stored_objects(database_url: str) -> None:
    from sqlalchemy import create_engine, text

    from db.migrate import upgrade

    upgrade(database_url, "0003")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO customers (id, email, raw, stripe_updated, updated_at) VALUES "
                          "('cus_ip', 'a@example.io', :with_ip, 0, CURRENT_TIMESTAMP), "
                          "('cus_none', 'b@example.io', :without, 0, CURRENT_TIMESTAMP)"),
                     {"with_ip": '{"metadata": {"ip": "203.0.113.7"}}', "without": '{"metadata": {}}'})
    upgrade(database_url, "0006")
    with engine.connect() as conn:
        found: dict[str, str | None] = dict(conn.execute(text("SELECT id, metadata_ip FROM customers")).all())
    engine.dispose()
    assert found == {"cus_ip": "203.0.113.7", "cus_none": None}


def test_undo_leaves_a_value_that_was_listed_before(runtime: Any, emulator: EmulatorHandle) -> None:
    first, _ = _efw(runtime, email="twice@example.io")
    second, _ = _efw(runtime, email="twice@example.io")  # the same customer and card again
    _sync(runtime)
    efw_radar.block_fraud_warning(first, card=True, email=False, **_ctx(runtime))
    [outcome] = efw_radar.block_fraud_warning(second, card=True, email=False, **_ctx(runtime))
    assert outcome.ok and "already on the list" in outcome.message
    [listed_before] = efw_radar.blocks_for(runtime.uow(), second)
    assert listed_before.created_item is False
    assert "stays on @console_blocked_card_fingerprints" in efw_radar.unblock(listed_before.id, **_ctx(runtime))
    assert len(_items(runtime)["console_blocked_card_fingerprints"]) == 1  # the first warning's block holds
    [owner] = efw_radar.blocks_for(runtime.uow(), first)
    efw_radar.unblock(owner.id, **_ctx(runtime))
    assert _items(runtime)["console_blocked_card_fingerprints"] == []


def test_a_stripe_error_while_blocking_is_reported_and_can_be_retried(runtime: Any, emulator: EmulatorHandle) -> None:
    efw_id, _ = _efw(runtime)
    _sync(runtime)
    emulator.admin("faults", {"rate_500": 1.0})
    try:
        [failed] = efw_radar.block_fraud_warning(efw_id, card=False, email=True, **_ctx(runtime))
    finally:
        emulator.admin("faults", {"rate_500": 0.0})
    assert not failed.ok and failed.message.startswith("Could not block the email")
    [row] = efw_radar.blocks_for(runtime.uow(), efw_id)
    assert (row.status, row.item_id) == ("removed", None)
    [retried] = efw_radar.block_fraud_warning(efw_id, card=False, email=True, **_ctx(runtime))
    assert retried.ok and _items(runtime) == {"console_blocked_emails": ["fraud@example.io"]}
    assert [a.result for a in _audits(runtime, "efw.block")] == ["error", "ok"]
