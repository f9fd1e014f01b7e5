"""Early fraud warnings, the funnel: how many were refunded, ignored or became disputes,
what the disputes cost (amount lost plus Stripe's fee) and how long decisions took."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime

from db.repositories import fraud_warnings as efw_repo
from db.session import UnitOfWork
from services.percentiles import nearest_rank

# What a lost dispute costs beyond the amount: the network fee Stripe charges (USD 15 by default).
# The fee is in its own currency, not the disputed charge's (1500 is 15.00 USD, but would be 1,500 JPY).
DISPUTE_FEE_MINOR_UNITS = 1500
DISPUTE_FEE_CURRENCY = "usd"


# --- the funnel ----------------------------------------------------------------------------------
@dataclass
class Funnel:
    # the decisions, and how long they took
    total: int = 0
    refunded: int = 0  # refunded from the console, or the charge fully refunded elsewhere
    refunded_elsewhere: int = 0  # of those: still open here, the charge fully refunded (e.g. the Dashboard)
    ignored: int = 0
    open: int = 0  # still open: neither decided nor resolved at Stripe (the queue's Open tile)
    open_disputed: int = 0  # undecided here, the charge disputed: answered on the Disputes page instead
    hours_to_decision_median: float | None = None
    hours_to_decision_p90: float | None = None
    # the warnings whose charge was disputed anyway, and what the lost ones cost
    became_disputes: int = 0
    dispute_cost: dict[str, int] = field(default_factory=dict)  # currency -> amount lost + fees
    disputes_won: int = 0
    disputes_lost: int = 0
    disputes_pending: int = 0


def funnel(uow: UnitOfWork, *, since: datetime, until: datetime) -> Funnel:
    """Of the EFWs created in [since, until): what was decided, and which became disputes.

    Counted in SQL (statuses from the funnel index; only the decided warnings' times and only the
    disputed warnings' newest disputes are read), not a row per warning."""
    with uow:
        statuses = efw_repo.funnel_statuses(uow, since, until)
        decisions = efw_repo.funnel_decisions(uow, since, until)
        disputed = efw_repo.funnel_disputes(uow, since, until)
    # Decided here first; an undecided warning is then what its charge says, as on the queue's tiles:
    # disputed, fully refunded (elsewhere), or still open. warnings = refunded + ignored + open + open_disputed.
    result = Funnel(total=sum(statuses.values()))
    for (status, charge_state), n in statuses.items():
        if status == "refunded":
            result.refunded += n
        elif status == "ignored":
            result.ignored += n
        elif charge_state == "disputed":
            result.open_disputed += n
        elif charge_state == "refunded":
            result.refunded += n
            result.refunded_elsewhere += n
        else:
            result.open += n
    waits = [(decided_at - created).total_seconds() / 3600 for created, decided_at in decisions]
    for _efw_id, currency, dispute_status, dispute_amount in disputed:
        result.became_disputes += 1
        if dispute_status == "won":
            result.disputes_won += 1
        elif dispute_status == "lost":
            result.disputes_lost += 1
            result.dispute_cost[currency] = result.dispute_cost.get(currency, 0) + int(dispute_amount or 0)
            result.dispute_cost[DISPUTE_FEE_CURRENCY] = (result.dispute_cost.get(DISPUTE_FEE_CURRENCY, 0)
                                                         + DISPUTE_FEE_MINOR_UNITS)
        else:
            result.disputes_pending += 1
    if waits:
        result.hours_to_decision_median = round(statistics.median(waits), 1)
        result.hours_to_decision_p90 = round(nearest_rank(waits, 90), 1)
    return result

