"""The queue pages' fast reads against a naive computation over every row, on SQLite and PostgreSQL:
the EFW tiles and order (the charge's state kept on the warning by the database's triggers,
migration 0011), the EFW funnel, the disputes queue's tiles and the monitoring-programme counts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, text, update

from db.models import Charge, Dispute, FraudWarning
from db.repositories import disputes as disputes_repo
from db.session import UnitOfWork
from services import efw_funnel
from services import fraud_warnings as efw
from services.percentiles import nearest_rank

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EFW_STATUSES = ("open", "open", "refunding", "refunded", "ignored")


def _seed(url: str, n: int = 120) -> None:
    """Warnings on charges refunded in part, in full or not at all, some without a charge; charges
    with no, one or two disputes (one without a creation time); two currencies."""
    rng = random.Random(23)
    charges, warnings, disputes = [], [], []
    for i in range(n):
        amount = rng.randint(100, 9000)
        currency = "usd" if i % 3 else "eur"
        if i % 9 != 0:  # every 9th warning's charge is not in the billing DB
            refunded = rng.choice([0, 0, 0, amount, amount // 3, amount + 5])
            charges.append(Charge(id=f"ch_agg_{i}", amount=amount, amount_refunded=refunded, currency=currency,
                                  status="succeeded", created=NOW - timedelta(days=rng.randint(0, 80))))
        created = NOW - timedelta(days=rng.randint(0, 60), minutes=i)
        status = EFW_STATUSES[i % len(EFW_STATUSES)]
        decided = created + timedelta(hours=rng.randint(1, 90)) if status in ("refunded", "ignored") and i % 4 else None
        warnings.append(FraudWarning(id=f"issfr_agg_{i}", charge_id=f"ch_agg_{i}", amount=amount, currency=currency,
                                     fraud_type=("misc", "made_with_stolen_card")[i % 2], actionable=i % 7 != 0,
                                     created=created, status=status, decided_at=decided))
        for k in range(rng.choice([0, 0, 0, 1, 2])):
            disputes.append(Dispute(
                id=f"dp_agg_{i}_{k}", charge_id=f"ch_agg_{i}", amount=amount, currency=currency,
                status=rng.choice(["needs_response", "warning_needs_response", "won", "lost", "under_review"]),
                reason="fraudulent", due_by=NOW + timedelta(hours=rng.randint(-50, 100)) if i % 11 else None,
                created=None if k and i % 2 else created + timedelta(days=k + 1), raw={}))
    with UnitOfWork(url) as uow:
        # Some warnings stored before their charge and disputes, some after: the triggers keep both orders.
        uow.session.add_all(warnings[::2])
        uow.session.flush()
        uow.session.add_all([*charges, *disputes])
        uow.session.flush()
        uow.session.add_all(warnings[1::2])
        uow.commit()


def _rows(url: str) -> tuple[list[FraudWarning], dict[str, Charge], dict[str, list[Dispute]]]:
    with UnitOfWork(url) as uow:
        warnings = list(uow.session.execute(select(FraudWarning)).scalars())
        charges = {c.id: c for c in uow.session.execute(select(Charge)).scalars()}
        by_charge: dict[str, list[Dispute]] = {}
        for d in uow.session.execute(select(Dispute)).scalars():
            by_charge.setdefault(d.charge_id or "", []).append(d)
        uow.session.expunge_all()
    return warnings, charges, by_charge


def _naive_tiles(url: str, flt: efw.EfwFilter) -> tuple[Any, ...]:
    warnings, charges, disputes = _rows(url)
    open_count = actionable = refunded_n = disputed_n = 0
    at_risk: dict[str, int] = {}
    for w in warnings:
        if w.status != "open" or not _matches(w, flt):
            continue
        refunded = charges[w.charge_id].amount_refunded if w.charge_id in charges else 0
        if disputes.get(w.charge_id):
            disputed_n += 1
        elif refunded >= w.amount:
            refunded_n += 1
        else:
            open_count += 1
            if w.actionable:
                actionable += 1
                at_risk[w.currency] = at_risk.get(w.currency, 0) + w.amount - refunded
    return open_count, actionable, at_risk, refunded_n, disputed_n


def _matches(w: FraudWarning, flt: efw.EfwFilter) -> bool:
    return ((not flt.statuses or w.status in flt.statuses) and (not flt.fraud_types or w.fraud_type in flt.fraud_types)
            and (flt.actionable is None or w.actionable is flt.actionable))


FILTERS = (efw.EfwFilter(), efw.EfwFilter(statuses=()), efw.EfwFilter(fraud_types=("misc",)),
           efw.EfwFilter(actionable=True), efw.EfwFilter(statuses=("open",), actionable=False))


def _fast_tiles(url: str, flt: efw.EfwFilter) -> tuple[Any, ...]:
    queue = efw.list_queue(UnitOfWork(url), flt, now=NOW)
    return queue.open_count, queue.actionable_open_count, queue.at_risk, queue.resolved_by_refund, queue.disputed


def _assert_efw_matches(url: str) -> None:
    for flt in FILTERS:
        assert _fast_tiles(url, flt) == _naive_tiles(url, flt), flt


def test_efw_tiles_equal_the_naive_count(migrated_url: str) -> None:
    _seed(migrated_url)
    _assert_efw_matches(migrated_url)


def test_efw_queue_order_equals_the_naive_sort(migrated_url: str) -> None:
    _seed(migrated_url)
    warnings, charges, disputes = _rows(migrated_url)

    def ours(w: FraudWarning) -> bool:
        refunded = charges[w.charge_id].amount_refunded if w.charge_id in charges else 0
        return w.actionable and not disputes.get(w.charge_id) and refunded < w.amount

    for flt in FILTERS:
        kept = [w for w in warnings if _matches(w, flt)]
        expected = [w.id for w in sorted(kept, key=lambda w: (w.status != "open", not ours(w), w.created, w.id))]
        paged = [r.id for offset in range(0, len(kept) + 20, 20)
                 for r in efw.list_queue(UnitOfWork(migrated_url), efw.EfwFilter(
                     statuses=flt.statuses, fraud_types=flt.fraud_types, actionable=flt.actionable, limit=20,
                     offset=offset), now=NOW).rows]
        assert paged == expected, flt


def test_the_triggers_follow_every_change_of_the_charge_and_its_disputes(migrated_url: str) -> None:
    _seed(migrated_url, n=40)
    with UnitOfWork(migrated_url) as uow:
        # Refunds change, a charge goes, a dispute goes, a dispute moves to another charge, a
        # warning moves to another charge, a new dispute and a new charge arrive.
        uow.session.execute(update(Charge).where(Charge.id.in_(["ch_agg_1", "ch_agg_2", "ch_agg_4"]))
                            .values(amount_refunded=Charge.amount))
        uow.session.execute(update(Charge).where(Charge.id == "ch_agg_5").values(amount_refunded=0))
        uow.session.execute(delete(Charge).where(Charge.id == "ch_agg_7"))
        uow.session.execute(delete(Dispute).where(Dispute.charge_id == "ch_agg_3"))
        uow.session.execute(update(Dispute).where(Dispute.charge_id == "ch_agg_8").values(charge_id="ch_agg_10"))
        uow.session.execute(update(FraudWarning).where(FraudWarning.id == "issfr_agg_11")
                            .values(charge_id="ch_agg_12"))
        uow.session.add(Dispute(id="dp_agg_new", charge_id="ch_agg_13", amount=1, currency="usd",
                                status="needs_response", raw={}))
        uow.session.add(Charge(id="ch_agg_9", amount=10, amount_refunded=3, currency="usd", status="succeeded"))
        uow.commit()
    _assert_efw_matches(migrated_url)
    warnings, charges, disputes = _rows(migrated_url)
    for w in warnings:
        refunded = charges[w.charge_id].amount_refunded if w.charge_id in charges else 0
        assert (w.charge_amount_refunded, w.charge_disputed) == (refunded, bool(disputes.get(w.charge_id))), w.id


def _naive_funnel(url: str, since: datetime, until: datetime) -> efw_funnel.Funnel:
    """The funnel computed the slow way: every warning of the period with its charge and newest dispute."""
    warnings, charges, disputes = _rows(url)
    result = efw_funnel.Funnel()
    waits: list[float] = []
    for w in warnings:
        if w.created is None or not since <= w.created < until:
            continue
        result.total += 1
        charge_refunded = charges[w.charge_id].amount_refunded if w.charge_id in charges else 0
        if w.status == "refunded":
            result.refunded += 1
        elif w.status == "ignored":
            result.ignored += 1
        elif disputes.get(w.charge_id):
            result.open_disputed += 1
        elif charge_refunded >= w.amount:
            result.refunded += 1
            result.refunded_elsewhere += 1
        else:
            result.open += 1
        if w.decided_at is not None and w.status in ("refunded", "ignored"):
            waits.append((w.decided_at - w.created).total_seconds() / 3600)
        mine = disputes.get(w.charge_id) or []
        if not mine:
            continue
        newest = max(mine, key=lambda d: (d.created is not None, d.created or since, d.id))
        result.became_disputes += 1
        if newest.status == "won":
            result.disputes_won += 1
        elif newest.status == "lost":
            result.disputes_lost += 1
            result.dispute_cost[w.currency] = result.dispute_cost.get(w.currency, 0) + newest.amount
            result.dispute_cost["usd"] = result.dispute_cost.get("usd", 0) + efw_funnel.DISPUTE_FEE_MINOR_UNITS
        else:
            result.disputes_pending += 1
    if waits:
        import statistics

        result.hours_to_decision_median = round(statistics.median(waits), 1)
        result.hours_to_decision_p90 = round(nearest_rank(waits, 90), 1)
    return result


def test_efw_funnel_equals_the_naive_count(migrated_url: str) -> None:
    _seed(migrated_url)
    for days in (7, 30, 90):
        since, until = NOW - timedelta(days=days), NOW + timedelta(minutes=1)
        fast = efw_funnel.funnel(UnitOfWork(migrated_url), since=since, until=until)
        assert fast == _naive_funnel(migrated_url, since, until), days
        assert fast.total and fast.became_disputes and fast.hours_to_decision_median is not None
        assert fast.total == fast.refunded + fast.ignored + fast.open + fast.open_disputed


def test_dispute_tiles_equal_the_naive_count(migrated_url: str) -> None:
    _seed(migrated_url)
    open_statuses = ("warning_needs_response", "needs_response")
    with UnitOfWork(migrated_url) as uow:
        rows = list(uow.session.execute(select(Dispute)).scalars())
        for statuses in ((), open_statuses, ("needs_response", "won")):
            for currency in (None, "eur"):
                where = disputes_repo.queue_filter(statuses=statuses, currency=currency)
                tiles = disputes_repo.queue_tiles(uow, where, open_statuses, NOW)
                mine = [d for d in rows if d.status in open_statuses and (not statuses or d.status in statuses)
                        and (currency is None or d.currency == currency)]
                due = [d.due_by for d in mine if d.due_by is not None]
                at_risk: dict[str, int] = {}
                for d in mine:
                    at_risk[d.currency] = at_risk.get(d.currency, 0) + d.amount
                assert (tiles.open_count, tiles.overdue, tiles.due_24h, tiles.due_72h, tiles.at_risk) == (
                    len(mine), sum(t < NOW for t in due), sum(NOW <= t < NOW + timedelta(hours=24) for t in due),
                    sum(NOW <= t < NOW + timedelta(hours=72) for t in due), at_risk), (statuses, currency)
                assert disputes_repo.count(uow, where) == sum(
                    1 for d in rows if (not statuses or d.status in statuses)
                    and (currency is None or d.currency == currency))


def test_the_triggers_exist_at_head(migrated_url: str) -> None:
    """A later SQLite batch migration that rebuilds charges, disputes or fraud_warnings drops their
    triggers (migration 0011 says how to create them again): this fails until it does."""
    with UnitOfWork(migrated_url) as uow:
        if uow.session.get_bind().dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        else:
            query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        names = set(uow.session.execute(text(query)).scalars())
    assert {n for n in names if "fraud_warnings" in n} == (
        {"trg_fraud_warnings_charge_state_insert", "trg_fraud_warnings_charge_state_update",
         "trg_charges_fraud_warnings_insert", "trg_charges_fraud_warnings_update", "trg_charges_fraud_warnings_delete",
         "trg_disputes_fraud_warnings_insert", "trg_disputes_fraud_warnings_update",
         "trg_disputes_fraud_warnings_delete"} if "sqlite_master" in query else
        {"trg_fraud_warnings_charge_state_insert", "trg_fraud_warnings_charge_state_update",
         "trg_charges_fraud_warnings", "trg_disputes_fraud_warnings"})


def test_efw_funnel_counts_a_charge_refunded_elsewhere_as_refunded_not_open(migrated_url: str) -> None:
    with UnitOfWork(migrated_url) as uow:
        uow.session.add_all([
            Charge(id="ch_dash", amount=900, amount_refunded=900, currency="usd", status="succeeded"),
            Charge(id="ch_part", amount=900, amount_refunded=100, currency="usd", status="succeeded"),
            FraudWarning(id="issfr_dash", charge_id="ch_dash", amount=900, currency="usd", actionable=False,
                         created=NOW - timedelta(hours=2), status="open"),
            FraudWarning(id="issfr_part", charge_id="ch_part", amount=900, currency="usd", actionable=True,
                         created=NOW - timedelta(hours=1), status="open"),
        ])
        uow.commit()
    result = efw_funnel.funnel(UnitOfWork(migrated_url), since=NOW - timedelta(days=1), until=NOW)
    # Refunded in the Dashboard: resolved, not "still open"; a partial refund leaves it open.
    assert (result.total, result.refunded, result.refunded_elsewhere, result.open) == (2, 1, 1, 1)
