"""The disputes and EFW repositories' queries with edge cases, on SQLite and PostgreSQL: rows
counted by whole days back (a row exactly on a day boundary, one microsecond either side, one at
`now`), chargebacks per network (Stripe's network, else brand, else the charge's brand, inquiries
left out), the queue's tiles per currency, and EFWs per card brand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from db.models import Charge, Dispute, FraudWarning
from db.repositories import customer_history, disputes, fraud_warnings
from db.session import UnitOfWork

NOW = datetime(2026, 6, 15, 12, 0, 0, 500_000, tzinfo=UTC)
US = timedelta(microseconds=1)
DAY = timedelta(days=1)


def _dispute(i: int, created: datetime, **extra: object) -> Dispute:
    fields: dict[str, object] = {"charge_id": None, "amount": 1000, "currency": "usd", "status": "needs_response",
                                 "raw": {}, **extra}
    return Dispute(id=f"dp_repo_{i}", created=created, **fields)


def test_counts_by_day_puts_each_row_in_its_whole_day(migrated_url: str) -> None:
    at = [NOW - US, NOW - DAY + US, NOW - DAY, NOW - DAY - US, NOW - 3 * DAY, NOW, NOW + US, NOW - 40 * DAY]
    with UnitOfWork(migrated_url) as uow:
        uow.session.add_all(_dispute(i, t) for i, t in enumerate(at))
        uow.session.add_all([Charge(id="ch_ok", amount=5, currency="usd", status="succeeded", created=NOW - US),
                             Charge(id="ch_failed", amount=5, currency="usd", status="failed", created=NOW - US)])
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        by_day = disputes.created_by_day(uow, now=NOW, days=30)
        charges = customer_history.succeeded_charges_by_day(uow, now=NOW, days=30)
    # (now - 1 day, now) is day 0; exactly one day back is still day 0; a microsecond more is day 1;
    # `now` itself, the future and what is more than `days` back are in no day.
    assert by_day == {0: 3, 1: 1, 2: 1}
    assert charges == {0: 1}


def test_chargebacks_by_network_reads_network_then_brand_then_charge(migrated_url: str) -> None:
    card = {"payment_method_details": {"card": {"network": "Visa", "brand": "mastercard"}}}
    brand_only = {"payment_method_details": {"card": {"network": "", "brand": "MasterCard"}}}
    with UnitOfWork(migrated_url) as uow:
        uow.session.add_all([Charge(id="ch_amex", amount=5, currency="usd", card_brand="Amex", created=NOW),
                             Charge(id="ch_blank", amount=5, currency="usd", card_brand="", created=NOW)])
        uow.session.add_all([
            _dispute(1, NOW - DAY, raw=card),
            _dispute(2, NOW - DAY, raw=brand_only),
            _dispute(3, NOW - DAY, charge_id="ch_amex"),
            _dispute(4, NOW - DAY, charge_id="ch_blank"),
            _dispute(5, NOW - DAY, raw=card, status="warning_needs_response"),  # an inquiry: not a chargeback
            _dispute(6, NOW - 40 * DAY, raw=card),  # outside the month
        ])
        uow.session.add_all([
            FraudWarning(id="issfr_repo_1", charge_id="ch_amex", amount=5, currency="usd", created=NOW - DAY),
            FraudWarning(id="issfr_repo_2", charge_id="ch_blank", amount=5, currency="usd", created=NOW - DAY),
        ])
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        networks = disputes.chargebacks_by_network(uow, NOW - 30 * DAY, NOW)
        brands = fraud_warnings.by_card_brand(uow, NOW - 30 * DAY, NOW)
    assert networks == {"visa": 1, "mastercard": 1, "amex": 1, "unknown": 1}
    assert brands == {"amex": 1, "unknown": 1}


def test_queue_tiles_add_up_across_currencies(migrated_url: str) -> None:
    with UnitOfWork(migrated_url) as uow:
        uow.session.add_all([
            _dispute(1, NOW, due_by=NOW - DAY, amount=100),  # overdue
            _dispute(2, NOW, due_by=NOW + timedelta(hours=2), amount=200, currency="eur"),  # 24 h and 72 h
            _dispute(3, NOW, due_by=NOW + timedelta(hours=48), amount=300),  # 72 h
            _dispute(4, NOW, due_by=None, amount=400, currency="eur"),  # no deadline
            _dispute(5, NOW, due_by=NOW - DAY, amount=999, status="won"),  # closed: not in the tiles
        ])
        uow.commit()
    open_statuses = ("needs_response", "warning_needs_response")
    with UnitOfWork(migrated_url) as uow:
        tiles = disputes.queue_tiles(uow, disputes.queue_filter(), open_statuses, NOW)
        page = disputes.queue_page(uow, disputes.queue_filter(), (), open_statuses, limit=5, offset=0)
    assert (tiles.open_count, tiles.overdue, tiles.due_24h, tiles.due_72h) == (4, 1, 1, 2)
    assert tiles.at_risk == {"usd": 400, "eur": 600}
    # Open by deadline first, then the closed one (where a missing deadline sorts is the database's call).
    assert [d.id for d in page if d.due_by] == ["dp_repo_1", "dp_repo_2", "dp_repo_3", "dp_repo_5"]


def test_queue_pages_follow_open_first_then_deadline_across_statuses(migrated_url: str) -> None:
    statuses = ["needs_response", "warning_needs_response", "won", "lost", "under_review"]
    rows = [_dispute(i, NOW, status=statuses[i % 5], due_by=NOW + timedelta(hours=(i * 7) % 23 - 11))
            for i in range(23)]
    rows.append(_dispute(99, NOW, status="needs_response", due_by=rows[0].due_by))  # a tie: by id
    with UnitOfWork(migrated_url) as uow:
        uow.session.add_all(rows)
        uow.commit()
    open_statuses = ("needs_response", "warning_needs_response")

    def expected(chosen: tuple[str, ...]) -> list[str]:
        kept = [d for d in rows if not chosen or d.status in chosen]
        return [d.id for d in sorted(kept, key=lambda d: (d.status not in open_statuses, d.due_by, d.id))]

    for chosen in ((), open_statuses, ("won", "lost"), ("needs_response", "lost", "under_review")):
        where = disputes.queue_filter(statuses=chosen)
        with UnitOfWork(migrated_url) as uow:
            paged = [d.id for offset in range(0, 30, 4)
                     for d in disputes.queue_page(uow, where, chosen, open_statuses, limit=4, offset=offset)]
            total = disputes.count(uow, where)
        assert paged == expected(chosen), chosen
        assert total == len(paged)
