"""Refunds that settle after they are created, for Stripe's refund test cards.

From Stripe's testing docs: a refund on `pm_card_pendingRefund` (4000000000007726) starts
`pending` and later turns `succeeded` with a `refund.updated` event; a refund on
`pm_card_refundFail` (4000000000005126) starts `succeeded` and later turns `failed` with
`failure_reason: expired_or_canceled_card` and a `refund.failed` event (the money goes back
to the balance, so the charge's `amount_refunded` drops by the refund). Both also emit
`charge.refund.updated`. Every other card's refund is `succeeded` at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Json = dict[str, Any]


class Engine(Protocol):
    """What settling a refund needs of emulator.engine.Engine (a protocol, so the engine can
    import this module without a cycle)."""

    objects: dict[str, dict[str, Json]]

    def later(self, delay_s: float, action: Callable[[], None]) -> None: ...

    def now_for(self, customer_id: str | None) -> int: ...

    def emit(self, event_type: str, obj: Json, *, created: int, previous: Json | None = None) -> Json | None: ...
SETTLE_AFTER_SECONDS = 1.0


def _behaviour(engine: Engine, charge: Json) -> str:
    pm = engine.objects.get("payment_method", {}).get(str(charge.get("payment_method") or ""))
    return str((pm or {}).get("_behaviour") or "ok")


def prepare(engine: Engine, refund: Json, charge: Json) -> Callable[[], None]:
    """Set the refund's first status; return what to schedule once the refund is stored."""
    behaviour = _behaviour(engine, charge)
    if behaviour == "pending_refund":
        refund["status"], refund["pending_reason"] = "pending", "processing"
        return lambda: engine.later(SETTLE_AFTER_SECONDS, lambda: _succeed(engine, refund))
    if behaviour == "refund_fail":
        return lambda: engine.later(SETTLE_AFTER_SECONDS, lambda: _fail(engine, refund, charge))
    return lambda: None


def _succeed(engine: Engine, refund: Json) -> None:
    if refund["status"] != "pending":
        return
    previous = {"status": "pending", "pending_reason": refund["pending_reason"]}
    refund["status"], refund["pending_reason"] = "succeeded", None
    now = engine.now_for(None)
    engine.emit("refund.updated", refund, created=now, previous=previous)
    engine.emit("charge.refund.updated", refund, created=now, previous=previous)


def _fail(engine: Engine, refund: Json, charge: Json) -> None:
    if refund["status"] != "succeeded":
        return
    previous = {"status": "succeeded", "failure_reason": None, "failure_balance_transaction": None}
    refund["status"], refund["failure_reason"] = "failed", "expired_or_canceled_card"
    refund["failure_balance_transaction"] = f"txn_{refund['id'][3:]}"
    charge["amount_refunded"] = max(0, charge["amount_refunded"] - refund["amount"])
    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    now = engine.now_for(None)
    engine.emit("refund.failed", refund, created=now, previous=previous)
    engine.emit("charge.refund.updated", refund, created=now, previous=previous)
