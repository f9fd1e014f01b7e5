"""Radar beside an early fraud warning: the charge's Radar context, related payments, and blocking.

Context comes from the charge as the billing DB holds it (kept current by charge.* webhooks):
`outcome` (type, risk_level, risk_score, seller_message, network_status, reason),
`payment_method_details.card.checks` (cvc_check, address_line1_check,
address_postal_code_check: pass | fail | unavailable | unchecked, or none when not provided),
`payment_method_details.card.three_d_secure` (result, version) and the card fingerprint.

Related payments share the card fingerprint (Stripe's per-card-number id), the customer's
email, or the purchase IP. Stripe does not put the client IP on a Charge, so the IP is the one
the app records, as the disputes evidence does: `metadata.ip` on the charge or the customer.

Blocking puts the card fingerprint and/or the email on a Radar value list the console owns
(aliases below, created on first use). A list blocks payments only through a Radar rule that
references it, e.g. `Block if :card_fingerprint: in @console_blocked_card_fingerprints` and
`Block if :email: in @console_blocked_emails`, added once in the Dashboard (rules are not in the
API). Each block is claimed by a `radar_blocks` row (unique per warning and item type), sent
with the idempotency key `block:efw:<id>:<item type>:<attempt>`, and audited; Undo deletes the
value-list item (`efw.unblock`), unless the value was on the list before this block (then
the item stays, and only this warning's block is lifted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.models import Customer, RadarBlock
from db.models.base import utcnow
from db.repositories import customer_history as history
from db.repositories import fraud_warnings as efw_repo
from db.repositories import radar_blocks as block_repo
from db.session import UnitOfWork
from services import audit
from services.audit import privileged
from services.config import Settings
from services.fraud_warnings import STALE_CLAIM, EfwActionError, refund_fraud_warning
from services.stripe_gateway import StripeGateway, StripeGatewayError

# item_type -> (alias the Radar rule references, the list's name)
BLOCK_LISTS: dict[str, tuple[str, str]] = {
    "card_fingerprint": ("console_blocked_card_fingerprints", "Blocked card fingerprints (billing console)"),
    "email": ("console_blocked_emails", "Blocked emails (billing console)"),
}
ITEM_LABELS = {"card_fingerprint": "card", "email": "email"}
RELATED_LIMIT = 50


def block_key(efw_id: str, item_type: str, attempt: int) -> str:
    return f"block:efw:{efw_id}:{item_type}:{attempt}"


# --- context ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RadarContext:
    charge_id: str
    outcome_type: str | None
    risk_level: str | None
    risk_score: int | None
    seller_message: str | None
    network_status: str | None
    outcome_reason: str | None
    cvc_check: str | None
    address_line1_check: str | None
    address_postal_code_check: str | None
    three_d_secure_result: str | None
    three_d_secure_version: str | None
    card_brand: str | None
    card_last4: str | None
    card_country: str | None
    fingerprint: str | None
    email: str | None
    ip: str | None

    def check(self, value: str | None) -> str:
        """How a card check reads: Stripe's word, or 'not provided' when Stripe sent none."""
        return value or "not provided"


def _ip_of(charge: dict[str, Any], customer: Customer | None) -> str | None:
    ip = (charge.get("metadata") or {}).get("ip")
    if not ip and customer is not None:
        ip = ((customer.raw or {}).get("metadata") or {}).get("ip")
    return str(ip) if ip else None


def radar_context(uow: UnitOfWork, efw_id: str) -> RadarContext | None:
    with uow:
        warning = efw_repo.get(uow, efw_id)
        charge = history.charge(uow, warning.charge_id) if warning else None
        if warning is None or charge is None:
            return None
        customer = history.customer(uow, charge.stripe_customer_id)
    raw = charge.raw or {}
    outcome = raw.get("outcome") or {}
    card = (raw.get("payment_method_details") or {}).get("card") or {}
    checks = card.get("checks") or {}
    three_d = card.get("three_d_secure") or {}
    email = (customer.email if customer else None) or warning.customer_email or \
        (raw.get("billing_details") or {}).get("email") or raw.get("receipt_email")
    return RadarContext(
        charge_id=charge.id, outcome_type=outcome.get("type"), risk_level=outcome.get("risk_level"),
        risk_score=outcome.get("risk_score"), seller_message=outcome.get("seller_message"),
        network_status=outcome.get("network_status"), outcome_reason=outcome.get("reason"),
        cvc_check=checks.get("cvc_check"), address_line1_check=checks.get("address_line1_check"),
        address_postal_code_check=checks.get("address_postal_code_check"),
        three_d_secure_result=three_d.get("result"), three_d_secure_version=three_d.get("version"),
        card_brand=charge.card_brand, card_last4=charge.card_last4, card_country=charge.card_country,
        fingerprint=charge.card_fingerprint, email=email, ip=_ip_of(raw, customer),
    )


# --- related payments ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RelatedPayment:
    charge_id: str
    created: datetime | None
    amount: int
    amount_refunded: int
    currency: str
    status: str | None
    outcome_type: str | None
    risk_level: str | None
    risk_score: int | None
    disputed: bool
    customer_email: str | None
    matched_on: tuple[str, ...]  # "card", "email", "ip"
    early_fraud_warning: str | None


def related_payments(uow: UnitOfWork, efw_id: str, *, limit: int = RELATED_LIMIT) -> list[RelatedPayment]:
    """Other charges sharing the card fingerprint, the email or the IP, newest first, with outcomes."""
    context = radar_context(uow, efw_id)
    if context is None:
        return []
    with uow:
        matches: dict[str, set[str]] = {}

        def add(kind: str, ids: list[str]) -> None:
            for charge_id in ids:
                if charge_id != context.charge_id:
                    matches.setdefault(charge_id, set()).add(kind)

        if context.fingerprint:
            add("card", history.charge_ids_with_fingerprint(uow, context.fingerprint, limit=limit))
        if context.email:
            add("email", history.charge_ids_with_email(uow, context.email, limit=limit))
        if context.ip:
            add("ip", history.charge_ids_with_ip(uow, context.ip, limit=limit))
        if not matches:
            return []
        rows = history.charges_with_email(uow, matches)
        warned = {w.charge_id: w.id for w in efw_repo.on_charges(uow, matches)}
    related: list[RelatedPayment] = []
    for charge, email in rows:
        warning_id = warned.get(charge.id)
        outcome = (charge.raw or {}).get("outcome") or {}
        related.append(RelatedPayment(
            charge_id=charge.id, created=charge.created, amount=charge.amount, amount_refunded=charge.amount_refunded,
            currency=charge.currency, status=charge.status, outcome_type=outcome.get("type"),
            risk_level=charge.risk_level, risk_score=charge.risk_score, disputed=charge.disputed,
            customer_email=email, matched_on=tuple(k for k in ("card", "email", "ip") if k in matches[charge.id]),
            early_fraud_warning=warning_id,
        ))
    return related[:limit]


# --- blocks ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockRow:
    id: int
    efw_id: str
    item_type: str
    value: str
    value_list_alias: str
    item_id: str | None
    status: str
    actor: str
    created_at: datetime
    created_item: bool
    removed_by: str | None
    removed_at: datetime | None

    @property
    def label(self) -> str:
        return ITEM_LABELS.get(self.item_type, self.item_type)


def _block_row(row: RadarBlock) -> BlockRow:
    return BlockRow(row.id, row.efw_id, row.item_type, row.value, row.value_list_alias, row.item_id, row.status,
                    row.actor, row.created_at, row.created_item, row.removed_by, row.removed_at)


def blocks_for(uow: UnitOfWork, efw_id: str) -> list[BlockRow]:
    with uow:
        return [_block_row(r) for r in block_repo.of_warning(uow, efw_id)]


def block_values(context: RadarContext | None) -> dict[str, str]:
    """What can be blocked for this warning: the card fingerprint and the email, when known."""
    if context is None:
        return {}
    values = {"card_fingerprint": context.fingerprint, "email": (context.email or "").strip().lower() or None}
    return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class BlockOutcome:
    item_type: str
    ok: bool
    message: str
    item_id: str | None = None


def _claim_block(uow: UnitOfWork, efw_id: str, charge_id: str, item_type: str, value: str, actor: str) -> int | None:
    """Take the (warning, item type) row for adding: a new row, or a removed / stale one again.
    Returns the attempt number, or None when another click holds it or it is already active."""
    alias = BLOCK_LISTS[item_type][0]
    now = utcnow()
    with uow:
        if block_repo.insert_claim(uow, {"efw_id": efw_id, "charge_id": charge_id, "item_type": item_type,
                                     "value": value, "value_list_alias": alias, "status": "adding", "attempt": 1,
                                     "actor": actor, "created_at": now, "updated_at": now}):
            uow.commit()
            return 1
        if not block_repo.reclaim(uow, efw_id, item_type, stale_before=now - STALE_CLAIM, values={
                "status": "adding", "value": value, "actor": actor, "item_id": None, "removed_by": None,
                "removed_at": None, "created_at": now, "updated_at": now}):
            return None
        row = block_repo.for_item_type(uow, efw_id, item_type)
        uow.commit()
        return int(row.attempt)


def _ensure_value_list(gateway: StripeGateway, item_type: str) -> dict[str, Any]:
    alias, name = BLOCK_LISTS[item_type]
    found = next((v for v in gateway.list_value_lists(alias=alias) if v.get("alias") == alias), None)
    if found is not None:
        return found
    return gateway.create_value_list({"alias": alias, "name": name, "item_type": item_type},
                                     idempotency_key=f"radar:value_list:{alias}")


def _same(item_type: str, a: str, b: str) -> bool:
    return a.lower() == b.lower() if item_type == "email" else a == b


def _block_one(efw_id: str, charge_id: str, item_type: str, value: str, *, actor: str, uow: UnitOfWork,
               gateway: StripeGateway) -> BlockOutcome:
    label = ITEM_LABELS[item_type]
    attempt = _claim_block(uow, efw_id, charge_id, item_type, value, actor)
    if attempt is None:
        with uow:
            status = block_repo.for_item_type(uow, efw_id, item_type).status
        # A second click: not an action of its own, so no audit row.
        return BlockOutcome(item_type, False, f"The {label} is already blocked." if status == "active"
                            else f"The {label} is being blocked right now.")
    key = block_key(efw_id, item_type, attempt)
    try:
        value_list = _ensure_value_list(gateway, item_type)
        existing = next((i for i in gateway.list_value_list_items(value_list["id"], value=value)
                         if _same(item_type, str(i.get("value") or ""), value)), None)
        item = existing or gateway.create_value_list_item(value_list["id"], value, idempotency_key=key)
    except StripeGatewayError as error:
        with uow:
            block_repo.set_for_item_type(uow, efw_id, item_type, {"status": "removed", "updated_at": utcnow()},
                                     status="adding")
            audit.record(uow, actor=actor, action="efw.block", target=efw_id, idempotency_key=key, result="error",
                         error=error.message, details={"item_type": item_type})
            uow.commit()
        return BlockOutcome(item_type, False, f"Could not block the {label}: {error.message}")
    with uow:
        block_repo.set_for_item_type(uow, efw_id, item_type, {
            "status": "active", "item_id": item["id"], "value_list_id": value_list["id"],
            "created_item": existing is None, "updated_at": utcnow()})
        audit.record(uow, actor=actor, action="efw.block", target=efw_id, idempotency_key=key, result="ok",
                     details={"item_type": item_type, "value_list": value_list["id"], "alias": value_list["alias"],
                              "item": item["id"], "already_listed": existing is not None})
        uow.commit()
    suffix = " (it was already on the list)" if existing is not None else ""
    return BlockOutcome(item_type, True, f"Blocked the {label} on Radar list {value_list['alias']}{suffix}.",
                        item["id"])


def _removed(actor: str) -> dict[str, Any]:
    now = utcnow()
    return {"status": "removed", "removed_by": actor, "removed_at": now, "updated_at": now}


def _wanted(context: RadarContext | None, card: bool, email: bool) -> dict[str, str]:
    values = block_values(context)
    return {t: v for t, v in values.items() if (t == "card_fingerprint" and card) or (t == "email" and email)}


@privileged("efw.block")
def block_fraud_warning(efw_id: str, *, card: bool, email: bool, actor: str, settings: Settings, uow: UnitOfWork,
                        gateway: StripeGateway) -> list[BlockOutcome]:
    """Put the warning's card fingerprint and/or email on the console's Radar block lists."""
    context = radar_context(uow, efw_id)
    wanted = _wanted(context, card, email)
    if context is None or not wanted:
        reason = ("Choose the card, the email or both to block." if not (card or email) and context is not None
                  else "There is no card fingerprint or email on this warning's charge to block.")
        with uow:
            audit.record(uow, actor=actor, action="efw.block", target=efw_id, result="refused", error=reason)
            uow.commit()
        raise EfwActionError(reason)
    return [_block_one(efw_id, context.charge_id, t, v, actor=actor, uow=uow, gateway=gateway)
            for t, v in wanted.items()]


@dataclass(frozen=True)
class RefundAndBlockResult:
    refund_id: str
    amount: int
    currency: str
    refund_status: str
    blocks: list[BlockOutcome]


@privileged("efw.refund_and_block")
def refund_and_block(efw_id: str, *, confirmed_amount: int, card: bool, email: bool, actor: str,
                     settings: Settings, uow: UnitOfWork, gateway: StripeGateway) -> RefundAndBlockResult:
    """One confirmed action: the guarded full refund (claim, live re-check, `refund:efw:<id>`), then
    the blocks. A refused refund blocks nothing (a second click stops here); a block that fails after
    the refund is reported and can be retried with Block alone."""
    context = radar_context(uow, efw_id)
    if not _wanted(context, card, email):
        reason = "Choose the card, the email or both to block, or use Refund alone."
        with uow:
            audit.record(uow, actor=actor, action="efw.refund_and_block", target=efw_id, result="refused",
                         error=reason)
            uow.commit()
        raise EfwActionError(reason)
    refund = refund_fraud_warning(efw_id, confirmed_amount=confirmed_amount, actor=actor, settings=settings, uow=uow,
                                  gateway=gateway)
    blocks = block_fraud_warning(efw_id, card=card, email=email, actor=actor, settings=settings, uow=uow,
                                 gateway=gateway)
    with uow:
        audit.record(uow, actor=actor, action="efw.refund_and_block", target=efw_id, result="ok",
                     details={"refund": refund.refund_id, "blocked": [b.item_type for b in blocks if b.ok]})
        uow.commit()
    return RefundAndBlockResult(refund.refund_id, refund.amount, refund.currency, refund.status, blocks)


@privileged("efw.unblock")
def unblock(block_id: int, *, actor: str, settings: Settings, uow: UnitOfWork, gateway: StripeGateway) -> str:
    """Undo a block: delete the value-list item at Stripe, so the value is no longer blocked."""
    now = utcnow()
    with uow:
        row = block_repo.get(uow, block_id)
        if row is None:
            raise EfwActionError(f"There is no block {block_id}.")
        efw_id, label = row.efw_id, ITEM_LABELS.get(row.item_type, row.item_type)
        alias, owned = row.value_list_alias, row.created_item
        item_id = row.item_id
        claimed = block_repo.claim_removal(uow, block_id, now)
        uow.commit()
    if not claimed:
        reason = f"This {label} block is not active; nothing was changed."
        with uow:
            audit.record(uow, actor=actor, action="efw.unblock", target=efw_id, result="refused", error=reason,
                         details={"block": block_id})
            uow.commit()
        raise EfwActionError(reason)
    if not owned:
        # The value was on the list before this block: lifting the block leaves it there.
        with uow:
            block_repo.set_block(uow, block_id, _removed(actor))
            audit.record(uow, actor=actor, action="efw.unblock", target=efw_id, result="ok",
                         details={"block": block_id, "item": item_id, "item_kept": True})
            uow.commit()
        return (f"Removed this warning's {label} block; the {label} stays on @{alias}, where it was listed "
                "before (remove it there or from the warning that added it).")
    try:
        if item_id:
            gateway.delete_value_list_item(item_id)
    except StripeGatewayError as error:
        if error.code != "resource_missing":  # already gone at Stripe (removed in the Dashboard): done
            with uow:
                block_repo.set_block(uow, block_id, {"status": "active", "updated_at": utcnow()})
                audit.record(uow, actor=actor, action="efw.unblock", target=efw_id, result="error",
                             error=error.message, details={"block": block_id, "item": item_id})
                uow.commit()
            raise EfwActionError(f"Could not remove the {label} from the Radar list: {error.message}") from None
    with uow:
        block_repo.lift_item(uow, block_id, item_id, _removed(actor))
        audit.record(uow, actor=actor, action="efw.unblock", target=efw_id, result="ok",
                     details={"block": block_id, "item": item_id})
        uow.commit()
    return f"The {label} is no longer blocked."
