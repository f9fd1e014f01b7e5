"""Early fraud warnings: the two decisions ops make on each one (refund, ignore), single and bulk.

Refunding is guarded three ways: the EFW is claimed locally with a conditional
UPDATE (a double click or a second admin cannot both refund), the EFW and its
charge are re-read live from Stripe right before the refund (not actionable,
disputed, already refunded, or an amount other than the one confirmed: refuse,
nothing sent), and the refund carries the idempotency key `refund:efw:<id>`,
so even a retry after a crash refunds once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from db.models.base import utcnow
from db.repositories import customer_history as history
from db.repositories import fraud_warnings as efw_repo
from db.session import UnitOfWork
from services import audit, stripe_mapping
from services.audit import privileged
from services.config import Settings
from services.efw_queue import STATUSES as STATUSES
from services.efw_queue import EfwFilter as EfwFilter
from services.efw_queue import EfwQueue as EfwQueue
from services.efw_queue import EfwRow as EfwRow
from services.efw_queue import RefundHistoryRow as RefundHistoryRow
from services.efw_queue import fraud_types as fraud_types
from services.efw_queue import get_fraud_warning as get_fraud_warning
from services.efw_queue import list_queue as list_queue
from services.efw_queue import refund_history as refund_history
from services.errors import ConsoleError
from services.money import format_money
from services.stripe_gateway import StripeGateway, StripeGatewayError
from services.stripe_objects import object_id

# The reads above live in services/efw_queue.py and are re-exported here (the page and many tests
# use them beside the decisions); the funnel is services/efw_funnel.py.

MIN_IGNORE_REASON_CHARS = 10
# A claim older than this belonged to a request that died; the idempotency key makes retrying it safe.
STALE_CLAIM = timedelta(minutes=2)


class EfwActionError(ConsoleError):
    """A refused or failed decision on an early fraud warning."""


def refund_key(efw_id: str) -> str:
    return f"refund:efw:{efw_id}"


# --- decisions ---------------------------------------------------------------------------------
def _claim_for_refund(uow: UnitOfWork, efw_id: str) -> bool:
    now = utcnow()
    with uow:
        if efw_repo.get(uow, efw_id) is None:
            raise EfwActionError(f"There is no early fraud warning {efw_id}.")
        claimed = efw_repo.claim_for_refund(uow, efw_id, now=now, stale_before=now - STALE_CLAIM)
        uow.commit()
    return claimed


def _release_claim(uow: UnitOfWork, efw_id: str) -> None:
    with uow:
        efw_repo.move(uow, efw_id, from_status="refunding", values={"status": "open", "updated_at": utcnow()})
        uow.commit()


def _refuse(uow: UnitOfWork, efw_id: str, actor: str, reason: str, result: str = "refused",
            details: dict[str, Any] | None = None, *, action: str = "efw.refund",
            key: str | None = None) -> EfwActionError:
    _release_claim(uow, efw_id)
    with uow:
        audit.record(uow, actor=actor, action=action, target=efw_id, idempotency_key=key or refund_key(efw_id),
                     result=result, error=reason, details=details)
        uow.commit()
    return EfwActionError(reason)


@dataclass(frozen=True)
class RefundResult:
    efw_id: str
    refund_id: str
    amount: int
    currency: str
    status: str = "succeeded"  # Stripe's refund status: pending | succeeded | failed | ... (card refunds settle later)


REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")  # the reasons Stripe accepts from us


def _full_refund_key(efw_id: str, previous_refund: str | None) -> str:
    """`refund:efw:<id>`; after our earlier refund failed at Stripe, a key of its own, since the
    first key would only replay the failed refund."""
    return refund_key(efw_id) if not previous_refund else f"{refund_key(efw_id)}:after:{previous_refund}"


def _partial_refund_key(efw_id: str, already_refunded: int, amount: int) -> str:
    """Derived from what was confirmed: a double click repeats the key (one refund); a second
    partial refund starts from a larger `already_refunded`, so it gets a key of its own."""
    return f"{refund_key(efw_id)}:partial:{already_refunded}:{amount}"


def _guarded_refund(efw_id: str, *, actor: str, uow: UnitOfWork, gateway: StripeGateway, action: str,
                    confirmed_remaining: int, amount: int | None, reason: str) -> RefundResult:
    """Claim, re-check live, refund once. `amount=None` refunds what is left (the full refund)."""
    with uow:
        current = efw_repo.get(uow, efw_id)
        previous_refund = current.refund_id if current is not None and current.status == "open" else None
        earlier = history.refund(uow, previous_refund)
        # Stripe marked the warning unactionable because of our refund, which then failed: refunding
        # again is still the right move, so `actionable` is not required for this retry.
        retry_after_failure = earlier is not None and earlier.status == "failed"
    if not _claim_for_refund(uow, efw_id):
        with uow:
            current = efw_repo.get(uow, efw_id)
            status = current.status if current else "missing"
        # A second click or a second admin: not an action of its own, so no audit row.
        raise EfwActionError(
            "This warning is being refunded right now." if status == "refunding"
            else f"This warning is already {status}; nothing was sent."
        )
    partial = amount is not None
    try:
        warning = gateway.retrieve_early_fraud_warning(efw_id)
        charge = gateway.retrieve_charge(object_id(warning.get("charge")) or "")
    except StripeGatewayError as error:
        raise _refuse(uow, efw_id, actor, f"Could not re-check the warning at Stripe: {error.message}",
                      result="error", action=action) from None
    refunded_before = int(charge.get("amount_refunded") or 0)
    remaining = int(charge.get("amount") or 0) - refunded_before
    currency = str(charge.get("currency") or "usd")
    key = (_partial_refund_key(efw_id, int(charge.get("amount") or 0) - confirmed_remaining, int(amount or 0))
           if partial else _full_refund_key(efw_id, previous_refund))
    if charge.get("disputed"):
        raise _refuse(uow, efw_id, actor, "The charge is disputed now, so it cannot be refunded; answer the dispute "
                                          "instead.", action=action, key=key)
    if remaining <= 0 or charge.get("refunded"):
        raise _refuse(uow, efw_id, actor, "The charge is already fully refunded; nothing was sent.", action=action,
                      key=key)
    if not partial and not retry_after_failure and not warning.get("actionable"):
        raise _refuse(uow, efw_id, actor, "Stripe no longer marks this warning actionable; nothing was sent.",
                      action=action, key=key)
    if remaining != confirmed_remaining:
        raise _refuse(uow, efw_id, actor,
                      f"The refundable amount changed to {format_money(remaining, currency)} since you confirmed "
                      f"{format_money(confirmed_remaining, currency)}; review it and confirm again.",
                      details={"remaining": remaining, "confirmed": confirmed_remaining}, action=action, key=key)
    to_refund = remaining if amount is None else amount
    if to_refund <= 0 or to_refund > remaining:
        raise _refuse(uow, efw_id, actor,
                      f"Choose an amount between {format_money(1, currency)} and {format_money(remaining, currency)};"
                      " nothing was sent.", details={"amount": to_refund, "remaining": remaining}, action=action,
                      key=key)
    try:
        refund = gateway.create_refund(
            {"charge": charge["id"], "amount": to_refund, "reason": reason, "metadata": {"efw": efw_id}},
            idempotency_key=key,
        )
    except StripeGatewayError as error:
        raise _refuse(uow, efw_id, actor, error.message, result="error", action=action, key=key) from None
    now = utcnow()
    with uow:
        row = efw_repo.get(uow, efw_id)
        assert row is not None
        fully = to_refund >= remaining
        row.status = "refunded" if fully else "open"
        row.action, row.actor, row.decided_at = ("refund" if not partial else "partial_refund"), actor, now
        row.refund_id, row.refund_amount, row.reason = refund["id"], int(row.refund_amount or 0) + to_refund, None
        if partial:
            row.reason = f"partial refund, {reason.replace('_', ' ')}"
        refreshed = {**charge, "amount_refunded": refunded_before + to_refund, "refunded": fully}
        stored = history.charge(uow, charge["id"])
        stripe_mapping.upsert_charge(uow, refreshed, observed_at=stripe_mapping.fresh_observed_at(stored))
        stored_refund = stripe_mapping.upsert_refund(uow, refund, observed_at=int(now.timestamp()))
        stored_refund.requested_by = actor
        audit.record(uow, actor=actor, action=action, target=efw_id, idempotency_key=key, result="ok",
                     details={"refund": refund["id"], "amount": to_refund, "currency": currency, "reason": reason,
                              "status": refund.get("status")})
        uow.commit()
    return RefundResult(efw_id, refund["id"], to_refund, currency, str(refund.get("status") or "succeeded"))


@privileged("efw.refund")
def refund_fraud_warning(
    efw_id: str, *, confirmed_amount: int, actor: str, settings: Settings, uow: UnitOfWork, gateway: StripeGateway
) -> RefundResult:
    """Refund what is left on the charge, after re-checking it live; exactly once."""
    return _guarded_refund(efw_id, actor=actor, uow=uow, gateway=gateway, action="efw.refund",
                           confirmed_remaining=confirmed_amount, amount=None, reason="fraudulent")


@privileged("efw.partial_refund")
def partial_refund_fraud_warning(
    efw_id: str, *, amount: int, reason: str, confirmed_remaining: int, actor: str, settings: Settings,
    uow: UnitOfWork, gateway: StripeGateway,
) -> RefundResult:
    """Refund part of the charge with one of Stripe's reasons; the same guards as the full refund,
    except that Stripe's `actionable` is not required (a partial refund does not stop a dispute).
    The warning stays open unless this refunds all that was left."""
    if reason not in REFUND_REASONS:
        raise _refused_decision(uow, "efw.partial_refund", efw_id, actor,
                                f"Choose a reason: {', '.join(r.replace('_', ' ') for r in REFUND_REASONS)}.")
    if amount <= 0:
        raise _refused_decision(uow, "efw.partial_refund", efw_id, actor,
                                "The amount must be more than zero; nothing was sent.")
    return _guarded_refund(efw_id, actor=actor, uow=uow, gateway=gateway, action="efw.partial_refund",
                           confirmed_remaining=confirmed_remaining, amount=amount, reason=reason)


def reopen_after_failed_refund(uow: UnitOfWork, refund: dict[str, Any]) -> bool:
    """Stripe reported our refund failed (the money went back to the balance): the warning we marked
    refunded is open again, with why, so ops can refund it again. Call inside the caller's unit."""
    if refund.get("status") != "failed":
        return False
    return efw_repo.reopen_refunded_by(uow, refund["id"], {
        "status": "open", "action": "refund_failed", "updated_at": utcnow(),
        "reason": f"Refund {refund['id']} failed at Stripe ({refund.get('failure_reason') or 'unknown'}); "
                  "the charge can be refunded again."})


def _refused_decision(uow: UnitOfWork, action: str, efw_id: str, actor: str, reason: str) -> EfwActionError:
    """A refused ignore/reopen still leaves its one audit row (result "refused"), and changes nothing else."""
    with uow:
        audit.record(uow, actor=actor, action=action, target=efw_id, result="refused", error=reason)
        uow.commit()
    return EfwActionError(reason)


def _decide(uow: UnitOfWork, efw_id: str, *, actor: str, action: str, from_status: str, values: dict[str, Any],
            details: dict[str, Any] | None, refused: Callable[[str], str]) -> None:
    """Move the warning out of `from_status` with one conditional UPDATE and audit it; if another
    request got there first (or there is no such warning), refuse with `refused(current status)`."""
    refusal: str | None = None
    with uow:
        if efw_repo.move(uow, efw_id, from_status=from_status, values=values):
            audit.record(uow, actor=actor, action=action, target=efw_id, result="ok", details=details)
            uow.commit()
        else:
            current = efw_repo.get(uow, efw_id)
            refusal = (f"There is no early fraud warning {efw_id}." if current is None
                       else refused(current.status))
    if refusal:
        raise _refused_decision(uow, action, efw_id, actor, refusal)


@privileged("efw.ignore")
def ignore_fraud_warning(efw_id: str, *, reason: str, actor: str, settings: Settings, uow: UnitOfWork) -> None:
    cleaned = (reason or "").strip()
    if len(cleaned) < MIN_IGNORE_REASON_CHARS:
        raise _refused_decision(uow, "efw.ignore", efw_id, actor,
                                f"Say why in at least {MIN_IGNORE_REASON_CHARS} characters; nothing was changed.")
    _decide(uow, efw_id, actor=actor, action="efw.ignore", from_status="open",
            values={"status": "ignored", "action": "ignore", "actor": actor, "reason": cleaned,
                    "decided_at": utcnow(), "updated_at": utcnow()},
            details={"reason": cleaned},
            refused=lambda status: f"This warning is already {status}; nothing was changed.")


@privileged("efw.reopen")
def reopen_fraud_warning(efw_id: str, *, actor: str, settings: Settings, uow: UnitOfWork) -> None:
    """Undo an ignore. A refund cannot be undone here: money already left."""
    _decide(uow, efw_id, actor=actor, action="efw.reopen", from_status="ignored",
            values={"status": "open", "action": "reopen", "actor": actor, "decided_at": None,
                    "updated_at": utcnow()},
            details=None,
            refused=lambda status: f"Only ignored warnings can be reopened; this one is {status}.")


@dataclass(frozen=True)
class BulkOutcome:
    efw_id: str
    ok: bool
    message: str


def _bulk(items: Sequence[str], run: Callable[[str], str],
          progress: Callable[[int, int], None] | None) -> list[BulkOutcome]:
    """One transaction per row: a failure never stops or rolls back the others."""
    outcomes: list[BulkOutcome] = []
    for index, efw_id in enumerate(items, start=1):
        try:
            outcomes.append(BulkOutcome(efw_id, True, run(efw_id)))
        except (EfwActionError, StripeGatewayError) as error:
            outcomes.append(BulkOutcome(efw_id, False, error.message))
        except Exception as error:  # noqa: BLE001 - one broken row must not stop the rest of the batch
            outcomes.append(BulkOutcome(efw_id, False, f"Failed unexpectedly ({type(error).__name__}); "
                                                       "the other rows were not affected."))
        if progress:
            progress(index, len(items))
    return outcomes


@dataclass(frozen=True)
class PlannedRefund:
    """One row of a bulk refund as the confirmation shows it: what will be refunded, or why nothing will."""

    row: EfwRow
    amount: int  # minor units: the refundable remainder (amount - amount_refunded), or 0 when skipped
    skip_reason: str | None

    @property
    def shown(self) -> str:
        return format_money(self.amount, self.row.currency)


def plan_bulk_refund(rows: Sequence[EfwRow]) -> list[PlannedRefund]:
    """What a bulk refund would send, per row, by the same rules the refund itself checks.

    The dialog's total is the sum of these amounts, so it equals what is refunded unless
    Stripe's state changed meanwhile (each refund re-checks live and refuses then).
    """
    planned: list[PlannedRefund] = []
    for row in rows:
        reason = None
        if row.status != "open":
            reason = f"already {row.status}"
        elif row.dispute_id:
            reason = "the charge is disputed; answer the dispute instead"
        elif row.remaining <= 0:
            reason = "the charge is already fully refunded"
        elif not row.actionable:
            reason = "Stripe does not mark this warning actionable"
        planned.append(PlannedRefund(row, 0 if reason else row.remaining, reason))
    return planned


def planned_totals(planned: Sequence[PlannedRefund]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for item in planned:
        if item.skip_reason is None:
            totals[item.row.currency] = totals.get(item.row.currency, 0) + item.amount
    return totals


@privileged("efw.bulk_refund")
def bulk_refund(confirmed_amounts: dict[str, int], *, actor: str, settings: Settings, uow: UnitOfWork,
                gateway: StripeGateway, progress: Callable[[int, int], None] | None = None) -> list[BulkOutcome]:
    def run(efw_id: str) -> str:
        result = refund_fraud_warning(efw_id, confirmed_amount=confirmed_amounts[efw_id], actor=actor,
                                      settings=settings, uow=uow, gateway=gateway)
        return f"refunded {format_money(result.amount, result.currency)} ({result.refund_id})"

    return _bulk(list(confirmed_amounts), run, progress)


@privileged("efw.bulk_ignore")
def bulk_ignore(efw_ids: Sequence[str], *, reason: str, actor: str, settings: Settings, uow: UnitOfWork,
                progress: Callable[[int, int], None] | None = None) -> list[BulkOutcome]:
    def run(efw_id: str) -> str:
        ignore_fraud_warning(efw_id, reason=reason, actor=actor, settings=settings, uow=uow)
        return "ignored"

    return _bulk(list(efw_ids), run, progress)
