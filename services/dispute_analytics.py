"""Dispute analytics: win rate by reason and by card network, fees and amount lost, time to
respond, and the dispute rate against the card networks' monitoring programmes, with a warning
before a threshold is crossed.

Monitoring programmes (Stripe, "Dispute and fraud card monitoring programs"; the networks'
own documents are the reference):
- Visa VAMP (since April 2025, replacing VDMP and VFMP): ratio = (disputes + fraud reports, TC15 +
  TC40) / settled card-not-present Visa payments in the same month; a merchant is "excessive" at
  1.5 % with at least 1,500 disputes and fraud reports. Fraud reports are Stripe's early fraud warnings.
- Visa VDMP (retired with VAMP): standard programme at 0.9 % and 100 disputes a month.
- Mastercard ECP: chargebacks this month / Mastercard payments *last* month; Chargeback Monitored
  Merchant at 1 % and 100 chargebacks, Excessive Chargeback Merchant at 1.5 % and 100.
- The console warns at 0.75 % on every network (an early warning below every programme), and
  whenever a network's rate reaches 80 % of a programme's ratio.
A programme is entered only when both its ratio and its count are reached; the page shows both.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from db.models import Dispute
from db.models.base import utcnow
from db.repositories import customer_history as history
from db.repositories import disputes as disputes_repo
from db.repositories import fraud_warnings as efw_repo
from db.session import UnitOfWork
from services import compelling_evidence as ce
from services.percentiles import nearest_rank

EARLY_WARNING = 0.0075
APPROACH = 0.8  # warn when a rate reaches this share of a programme's ratio


@dataclass(frozen=True)
class Programme:
    network: str  # visa | mastercard | all
    name: str
    ratio: float
    min_count: int | None
    note: str


PROGRAMMES = (
    Programme("all", "Console early warning", EARLY_WARNING, None, "below every network programme"),
    Programme("visa", "Visa VDMP standard (retired April 2025)", 0.009, 100, "disputes / Visa payments, same month"),
    Programme("mastercard", "Mastercard Chargeback Monitored Merchant", 0.01, 100,
              "chargebacks / last month's Mastercard payments"),
    Programme("visa", "Visa VAMP excessive", 0.015, 1500,
              "(disputes + early fraud warnings) / Visa payments, same month"),
    Programme("mastercard", "Mastercard Excessive Chargeback Merchant", 0.015, 100,
              "chargebacks / last month's Mastercard payments"),
)
# The lines the dispute-rate chart draws (kept as the page has always shown them).
CHART_LINES = {"early warning 0.75 %": EARLY_WARNING, "Visa VDMP 0.9 %": 0.009, "Mastercard CMM 1 %": 0.01,
               "VAMP / ECM 1.5 %": 0.015}


@dataclass
class Breakdown:
    key: str
    won: int = 0
    lost: int = 0
    open: int = 0
    inquiries_closed: int = 0

    @property
    def decided(self) -> int:
        return self.won + self.lost

    @property
    def win_rate(self) -> float | None:
        return self.won / self.decided if self.decided else None


@dataclass
class NetworkRate:
    network: str
    month: str
    disputes: int
    fraud_warnings: int
    payments: int  # the denominator the network uses (last month's for Mastercard)
    ratio: float  # the network's own ratio (VAMP adds fraud warnings for Visa)
    dispute_ratio: float  # disputes / payments only
    statuses: list[tuple[Programme, str]] = field(default_factory=list)  # (programme, ok|approaching|over)

    def ratio_for(self, programme: Programme) -> float:
        """VAMP counts disputes and fraud reports; the other programmes count disputes only."""
        return self.ratio if "VAMP" in programme.name else self.dispute_ratio

    def count_for(self, programme: Programme) -> int:
        return self.disputes + (self.fraud_warnings if "VAMP" in programme.name else 0)

    @property
    def warnings(self) -> list[str]:
        out = []
        for programme, status in self.statuses:
            if status == "ok":
                continue
            count = self.count_for(programme)
            verb = "is over" if status == "over" else "is approaching"
            text = (f"{self.network.title()} {self.ratio_for(programme) * 100:.2f} % {verb} {programme.name} "
                    f"({programme.ratio * 100:g} %)")
            if programme.min_count and count < programme.min_count:
                text += (f"; the programme also needs {programme.min_count:,} a month and this month has {count:,}, "
                         "so it does not apply yet")
            elif programme.min_count:
                text += f"; this month's {count:,} also reaches its count of {programme.min_count:,}"
            out.append(text + ".")
        return out


@dataclass
class Analytics:
    by_reason: list[Breakdown]
    by_network: list[Breakdown]
    amount_lost: dict[str, int]
    amount_won: dict[str, int]
    fees: dict[str, int]
    at_risk: dict[str, int]
    respond_hours: list[float]  # created -> submitted or accepted, per dispute
    ce3_submitted: int
    ce3_won: int
    rates: list[NetworkRate]

    @property
    def median_respond_hours(self) -> float | None:
        return statistics.median(self.respond_hours) if self.respond_hours else None

    @property
    def p90_respond_hours(self) -> float | None:
        # Nearest rank, as the EFW funnel and Dunning & SCA state theirs: always one of the waits.
        return nearest_rank(self.respond_hours, 90) if self.respond_hours else None

    @property
    def warnings(self) -> list[str]:
        return [w for rate in self.rates for w in rate.warnings]


def _network(dispute: Dispute, brands: dict[str, str | None]) -> str:
    network, _code = ce.network_of(dispute)
    return (network or brands.get(dispute.charge_id or "") or "unknown").lower()


def _fee(dispute: Dispute) -> int:
    return sum(int(t.get("fee") or 0) for t in (dispute.raw or {}).get("balance_transactions") or []
               if isinstance(t, dict))


def _month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _status(ratio: float, programme: Programme) -> str:
    if ratio >= programme.ratio:
        return "over"
    return "approaching" if ratio >= programme.ratio * APPROACH else "ok"


def monitoring_rates(uow: UnitOfWork, *, now: datetime | None = None) -> list[NetworkRate]:
    """This calendar month's rate per network, the way each network counts it."""
    moment = now or utcnow()
    start = _month_start(moment)
    previous_start = _month_start(start - timedelta(days=1))
    next_start = _month_start(start + timedelta(days=32))
    with uow:
        # Counted in SQL, by the network `_network` names (an inquiry that never escalated is no chargeback).
        counts = disputes_repo.chargebacks_by_network(uow, start, next_start)
        warnings_by_brand = efw_repo.by_card_brand(uow, start, next_start)
        rates = []
        for network in ("visa", "mastercard"):
            denominator = (history.succeeded_payments(uow, network, previous_start, start) if network == "mastercard"
                           else history.succeeded_payments(uow, network, start, next_start))
            disputes_n = counts.get(network, 0)
            frauds = warnings_by_brand.get(network, 0) if network == "visa" else 0
            ratio = (disputes_n + frauds) / denominator if denominator else 0.0
            rate = NetworkRate(network, f"{start:%Y-%m}", disputes_n, frauds, denominator, ratio,
                               disputes_n / denominator if denominator else 0.0)
            rate.statuses = [(p, _status(rate.ratio_for(p), p)) for p in PROGRAMMES if p.network in ("all", network)]
            rates.append(rate)
    return rates


def compute_warnings(uow: UnitOfWork, *, now: datetime | None = None) -> list[str]:
    """Only the monitoring-programme warnings (cheap enough for every disputes page load)."""
    return [w for rate in monitoring_rates(uow, now=now) for w in rate.warnings]


def compute(uow: UnitOfWork, *, now: datetime | None = None, days: int = 365) -> Analytics:
    moment = now or utcnow()
    with uow:
        rows = disputes_repo.created_between(uow, moment - timedelta(days=days))
        brands = history.card_brands(uow, [d.charge_id or "" for d in rows])
    reasons: dict[str, Breakdown] = {}
    networks: dict[str, Breakdown] = {}
    lost: dict[str, int] = defaultdict(int)
    won: dict[str, int] = defaultdict(int)
    fees: dict[str, int] = defaultdict(int)
    at_risk: dict[str, int] = defaultdict(int)
    hours: list[float] = []
    ce3_submitted = ce3_won = 0
    for dispute in rows:
        for table, key in ((reasons, dispute.reason or "general"), (networks, _network(dispute, brands))):
            row = table.setdefault(key, Breakdown(key))
            if dispute.status == "won":
                row.won += 1
            elif dispute.status == "lost":
                row.lost += 1
            elif dispute.status == "warning_closed":
                row.inquiries_closed += 1
            else:
                row.open += 1
        if dispute.status == "lost":
            lost[dispute.currency] += dispute.amount
        elif dispute.status == "won":
            won[dispute.currency] += dispute.amount
        elif dispute.status in ("needs_response", "under_review", "warning_needs_response", "warning_under_review"):
            at_risk[dispute.currency] += dispute.amount
        fee = _fee(dispute)
        if fee:
            fees[dispute.currency] += fee
        answered = dispute.submitted_at or dispute.accepted_at
        if answered is not None and dispute.created is not None:
            hours.append(max(0.0, (answered - dispute.created).total_seconds() / 3600))
        state = (((dispute.raw or {}).get("evidence_details") or {}).get("enhanced_eligibility") or {}).get(ce.CE3)
        if isinstance(state, dict) and state.get("status") == "qualified" and dispute.submission_count:
            ce3_submitted += 1
            ce3_won += dispute.status == "won"
    order = lambda b: (-(b.decided + b.open), b.key)  # noqa: E731
    return Analytics(sorted(reasons.values(), key=order), sorted(networks.values(), key=order), dict(lost),
                     dict(won), dict(fees), dict(at_risk), hours, ce3_submitted, ce3_won,
                     monitoring_rates(uow, now=moment))


def table(breakdowns: list[Breakdown], label: str) -> list[dict[str, Any]]:
    return [{label: b.key.replace("_", " "), "won": b.won, "lost": b.lost, "open": b.open,
             "inquiries closed": b.inquiries_closed,
             "win rate": f"{b.win_rate * 100:.0f} %" if b.win_rate is not None else "no decisions yet"}
            for b in breakdowns]
