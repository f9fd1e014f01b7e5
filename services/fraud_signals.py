"""The fraud signals the ALwrity checklist (§7–8) asks to watch, from the billing DB:
card testing (a burst of declined charges, or of very small charges), an unusually high
dispute volume, and frequent early fraud warnings. Each has a threshold in settings,
fires at the threshold (never below it) and is shown on the First-24h board.

Rising 429s on the SaaS's own checkout endpoint are not visible to the console (they never
reach Stripe); `billing-ops check` probes that limit instead (checkout.rate_limit).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from db.models.base import utcnow
from db.repositories import customer_history as history
from db.repositories import disputes as disputes_repo
from db.repositories import fraud_warnings as efw_repo
from db.session import UnitOfWork
from services.config import Settings
from services.money import format_money

HOUR = timedelta(hours=1)
DAY = timedelta(hours=24)
TOP_REASONS = 3


@dataclass(frozen=True)
class Signal:
    key: str
    title: str
    value: int
    threshold: int
    window: str
    detail: str

    @property
    def firing(self) -> bool:
        return self.threshold > 0 and self.value >= self.threshold


def _decline_reason(raw: dict[str, Any]) -> str:
    """Stripe's failure_code (e.g. card_declined), else the outcome's reason."""
    outcome = raw.get("outcome")
    reason = raw.get("failure_code") or (outcome.get("reason") if isinstance(outcome, dict) else None)
    return str(reason or "unknown")


def signals(uow: UnitOfWork, *, settings: Settings, now: datetime | None = None) -> list[Signal]:
    moment = now or utcnow()
    with uow:
        failed_raw = history.failed_charge_raws(uow, moment - HOUR, moment,
                                                limit=max(settings.alert_card_declines_per_hour, 1) * 50)
        reasons = Counter(_decline_reason(raw or {}) for raw in failed_raw)
        small_limit = settings.alert_small_charge_max_minor
        small = history.small_charges_by_currency(uow, moment - HOUR, moment, max_amount=small_limit)
        disputes = disputes_repo.count_created_between(uow, moment - DAY, moment)
        warnings = efw_repo.count_created_between(uow, moment - DAY, moment)
    top = ", ".join(f"{reason} ×{count}" for reason, count in reasons.most_common(TOP_REASONS)) or "none"
    small_count = sum(small.values())
    return [
        Signal("card_testing_declines", "Card testing: declined charges", len(failed_raw),
               settings.alert_card_declines_per_hour, "last hour",
               f"{len(failed_raw)} declined charges in the last hour (alert at "
               f"{settings.alert_card_declines_per_hour}); top reasons: {top}"),
        Signal("card_testing_small_charges", "Card testing: very small charges", small_count,
               settings.alert_small_charges_per_hour, "last hour",
               f"{small_count} charges of at most {small_limit} minor units (e.g. {format_money(small_limit, 'usd')}) "
               f"in the last hour (alert at {settings.alert_small_charges_per_hour})"),
        Signal("dispute_volume", "Dispute volume", disputes, settings.alert_disputes_per_day, "last 24 h",
               f"{disputes} disputes opened in the last 24 h (alert at {settings.alert_disputes_per_day})"),
        Signal("efw_frequency", "Early fraud warnings", warnings, settings.alert_efws_per_day, "last 24 h",
               f"{warnings} early fraud warnings in the last 24 h (alert at {settings.alert_efws_per_day})"),
    ]
