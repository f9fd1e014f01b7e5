"""Customer-controlled text from Stripe has no length the database may rely on (issue #16,
item 6): a customer name over 255 characters, a 500-character metadata value or a long email
is stored on SQLite and PostgreSQL (migration 0003), and `billing-ops sync` stores what it can,
reporting each row it could not store instead of aborting."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from db.models import Customer, Dispute, FraudWarning, UserSubscription
from db.session import UnitOfWork
from services import stripe_mapping
from services.sync import run_sync

LONG_EMAIL = "e" * 400 + "@example.com"


def test_long_customer_text_is_stored(migrated_url: str) -> None:
    with UnitOfWork(migrated_url) as uow:
        stripe_mapping.upsert_customer(uow, {"id": "cus_long", "object": "customer", "name": "N" * 5000,
                                             "email": LONG_EMAIL, "created": 1_700_000_000,
                                             "metadata": {"user_id": "u" * 500}}, observed_at=1)
        uow.session.add(UserSubscription(stripe_subscription_id="sub_long", stripe_customer_id="cus_long",
                                         status="active", user_id="u" * 500, pending_plan="p" * 500))
        uow.session.add(Dispute(id="dp_long", status="needs_response", customer_email=LONG_EMAIL))
        uow.session.add(FraudWarning(id="issfr_long", charge_id="ch_long", customer_email=LONG_EMAIL))
        uow.commit()
    with UnitOfWork(migrated_url) as uow:
        customer = uow.session.get(Customer, "cus_long")
        assert customer is not None
        assert (customer.name, customer.email, customer.user_id) == ("N" * 5000, LONG_EMAIL, "u" * 500)
        subscription = uow.session.execute(select(UserSubscription)).scalar_one()
        assert subscription.pending_plan == "p" * 500
        assert uow.session.get(Dispute, "dp_long").customer_email == LONG_EMAIL  # type: ignore[union-attr]
        assert uow.session.get(FraudWarning, "issfr_long").customer_email == LONG_EMAIL  # type: ignore[union-attr]


def test_sync_stores_long_names_and_reports_rows_it_cannot_store(database_url: str, runtime_factory: Any) -> None:

    runtime = runtime_factory(DATABASE_URL=database_url)
    gateway = runtime.gateway
    long_name = gateway.create_customer({"name": "L" * 300, "email": "long@example.com"}, idempotency_key="c-long")
    plain = gateway.create_customer({"name": "Plain Customer"}, idempotency_key="c-plain")
    nul = gateway.create_customer({"name": "Nul\x00Name"}, idempotency_key="c-nul")
    summary = run_sync(runtime, since=None, days=30)
    with runtime.uow() as uow:
        names = {c.id: c.name for c in uow.session.execute(select(Customer)).scalars()}
    assert names[long_name['id']] == "L" * 300 and names[plain['id']] == "Plain Customer"
    not_stored = summary["not_stored"]
    reported = [(r["kind"], r["id"]) for r in not_stored["rows"]]
    assert not_stored["count"] == len(reported)
    # The customer.created event carrying the NUL is refused on both databases (as the receiver would)...
    assert [kind for kind, _ in reported].count("events") == 1
    if database_url.startswith("postgresql"):  # ...and PostgreSQL text cannot hold NUL: the row is reported
        assert ("customers", nul["id"]) in reported and len(reported) == 2
        assert nul["id"] not in names
    else:
        assert len(reported) == 1 and names[nul["id"]] == "Nul\x00Name"
    assert "Nul" not in json.dumps(not_stored)  # the reasons never quote the value
    assert summary["objects"]["customers"] == len(names)
