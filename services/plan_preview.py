"""What a plan change would invoice, before anything is sent: Stripe's invoice preview with
the new price (an upgrade prorates now; a downgrade's preview is the renewal at the lower
price with no proration)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from db.session import UnitOfWork
from services.config import Settings
from services.metric_points import SUBSCRIPTION_PREVIEW, record_metric
from services.plan_changes import (
    DOWNGRADE_PRORATION,
    UPGRADE_PRORATION,
    change_direction,
    resolve_price,
    retrieve_by_id,
    subscription_item,
)
from services.stripe_gateway import StripeGateway
from services.stripe_objects import item_price_id, subscription_period


@dataclass(frozen=True)
class PreviewLine:
    description: str
    amount: int
    proration: bool


@dataclass(frozen=True)
class ChangePreview:
    subscription_id: str
    customer_id: str
    current_plan: str | None
    current_interval: str | None
    current_price_id: str | None
    target_plan: str
    target_interval: str
    target_price_id: str
    direction: str  # upgrade | downgrade | same
    currency: str
    proration_amount: int  # minor units: what the upgrade invoices now (0 for a scheduled downgrade)
    amount_due: int  # the preview invoice's amount due, minor units
    period_end: int | None
    lines: list[PreviewLine] = field(default_factory=list)

    @property
    def effective(self) -> str:
        return "now" if self.direction == "upgrade" else "at period end"


def line_is_proration(line: dict[str, Any]) -> bool:
    if line.get("proration") is not None:  # pre-basil shape
        return bool(line.get("proration"))
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
    return bool(details.get("proration"))


def preview_change(
    subscription_id: str,
    plan: str,
    interval: str,
    *,
    settings: Settings,
    uow: UnitOfWork,
    gateway: StripeGateway,
) -> ChangePreview:
    """What the change would invoice: Stripe's invoice preview with the new price."""
    target_price_id = resolve_price(settings, plan, interval)
    subscription = retrieve_by_id(gateway, subscription_id)
    item = subscription_item(subscription)
    direction = change_direction(gateway, subscription, target_price_id)
    current_price_id = item_price_id(subscription)
    current = settings.plan_for_price(current_price_id) if current_price_id else None
    customer_id = str(subscription.get("customer") or "")
    # Upgrades prorate and invoice now; a downgrade waits for the period end, so
    # its preview is the renewal invoice at the lower price with no proration.
    proration = UPGRADE_PRORATION if direction == "upgrade" else DOWNGRADE_PRORATION
    invoice = gateway.preview_invoice(
        {
            "customer": customer_id,
            "subscription": subscription["id"],
            "subscription_details": {
                "items": [{"id": item["id"], "price": target_price_id}],
                "proration_behavior": proration,
            },
        }
    )
    lines = [
        PreviewLine(
            description=str(line.get("description") or ""),
            amount=int(line.get("amount") or 0),
            proration=line_is_proration(line),
        )
        for line in ((invoice.get("lines") or {}).get("data") or [])
    ]
    proration_amount = sum(line.amount for line in lines if line.proration) if direction == "upgrade" else 0
    with uow:
        record_metric(
            uow,
            SUBSCRIPTION_PREVIEW,
            tags={"direction": direction, "to_plan": plan.lower(), "interval": interval.lower()},
        )
        uow.commit()
    return ChangePreview(
        subscription_id=subscription["id"],
        customer_id=customer_id,
        current_plan=current[0] if current else None,
        current_interval=current[1] if current else None,
        current_price_id=current_price_id,
        target_plan=plan.strip().lower(),
        target_interval=interval.strip().lower(),
        target_price_id=target_price_id,
        direction=direction,
        currency=str(invoice.get("currency") or "usd"),
        proration_amount=proration_amount,
        amount_due=int(invoice.get("amount_due") or invoice.get("total") or 0),
        period_end=subscription_period(subscription)[1],
        lines=lines,
    )
