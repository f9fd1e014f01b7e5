"""The billing-DB rows a batch of events touches, loaded up front: one SELECT per table for the
batch's customers, subscriptions, invoices, charges, disputes, early fraud warnings and refunds,
instead of a `session.get` (a query and an autoflush) per event and per lookup.

While a batch is applied (`loaded`), the mappers (services/stripe_mapping.py) and the handlers
(services/event_handlers.py) look rows up here: a row the batch loaded, or added since, comes from
memory; anything else is read as before (`session.get`) and remembered, a missing row as None.
The rows are the session's own objects, so the out-of-order rule (`stripe_updated`) reads exactly
what it read before. `raw` (the Stripe object as JSON) is not loaded: the mappers only ever
replace it. Outside a batch every lookup is the plain `session.get` it always was.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, defer

from db.models import Charge, Customer, Dispute, FraudWarning, Invoice, Refund, UserSubscription
from services.stripe_objects import object_id

# The model of each object kind an event carries (services/event_rereads.carried_kind).
MODEL_BY_KIND: dict[str, Any] = {
    "invoice": Invoice, "charge": Charge, "dispute": Dispute, "radar.early_fraud_warning": FraudWarning,
    "refund": Refund,
}
_CHUNK = 500  # ids per IN list


class ConcurrentChange(Exception):
    """Another transaction changed a row the batch loaded and is about to write."""


class BatchRows:
    """The rows one batch's session holds, by (model, id); subscriptions by their Stripe id."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.rows: dict[tuple[Any, str], Any] = {}
        self.subscriptions: dict[str, UserSubscription | None] = {}

    def prefetch(self, events: Sequence[dict[str, Any]]) -> None:
        from services.event_rereads import carried_kind

        wanted: dict[Any, set[str]] = {}
        subscriptions: set[str] = set()

        def want(model: Any, key: Any) -> None:
            if key:
                wanted.setdefault(model, set()).add(str(key))

        for event in events:
            obj = (event.get("data") or {}).get("object") or {}
            kind = carried_kind(str(event.get("type") or ""))
            if kind == "subscription" and obj.get("id"):
                subscriptions.add(str(obj["id"]))
            elif kind in MODEL_BY_KIND:
                want(MODEL_BY_KIND[kind], obj.get("id"))
            elif str(event.get("type") or "").startswith("checkout.session.") and object_id(obj.get("subscription")):
                subscriptions.add(str(object_id(obj.get("subscription"))))
            want(Customer, object_id(obj.get("customer")))
            if kind != "charge":
                want(Charge, object_id(obj.get("charge")))
            for refund in ((obj.get("refunds") or {}).get("data") or []) if kind == "charge" else []:
                want(Refund, refund.get("id"))
        for model, ids in wanted.items():
            for chunk in _chunks(ids - {key for m, key in self.rows if m is model}):
                found = {row.id: row for row in self.session.execute(
                    select(model).where(model.id.in_(chunk)).options(defer(model.raw))).scalars()}
                self.rows.update(((model, key), found.get(key)) for key in chunk)
        for chunk in _chunks(subscriptions - set(self.subscriptions)):
            found_subscriptions = {row.stripe_subscription_id: row for row in self.session.execute(
                select(UserSubscription).where(UserSubscription.stripe_subscription_id.in_(chunk))
                .options(defer(UserSubscription.raw))).scalars()}
            self.subscriptions.update((key, found_subscriptions.get(key)) for key in chunk)

    def get(self, model: Any, key: str) -> Any | None:
        try:
            return self.rows[(model, key)]
        except KeyError:
            row = self.rows[(model, key)] = self.session.get(model, key)
            return row

    def subscription(self, stripe_subscription_id: str) -> UserSubscription | None:
        try:
            return self.subscriptions[stripe_subscription_id]
        except KeyError:
            row = self.subscriptions[stripe_subscription_id] = self.session.execute(
                select(UserSubscription).where(UserSubscription.stripe_subscription_id == stripe_subscription_id)
            ).scalar_one_or_none()
            return row

    def add(self, row: Any) -> None:
        if isinstance(row, UserSubscription):
            self.subscriptions[row.stripe_subscription_id] = row
        else:
            self.rows[(type(row), row.id)] = row

    def check_unchanged(self) -> None:
        """PostgreSQL, before the batch is written: lock the loaded rows it changes (table by table,
        in id order, so two workers never wait on each other in a circle) and make sure nobody
        changed them since they were loaded, else raise ConcurrentChange (the caller applies the
        events again one at a time, each reading as it always did). This keeps the out-of-order
        rule as tight as a row read just before its write, although the rows were loaded for the
        whole batch. SQLite needs none: its writers are serial (BEGIN IMMEDIATE from the first read)."""
        if self.session.get_bind().dialect.name != "postgresql":
            return
        dirty = self.session.dirty
        loaded: dict[Any, dict[Any, dict[str, Any]]] = {}
        for row in [*self.rows.values(), *self.subscriptions.values()]:
            if row is None or row not in dirty:
                continue
            state = inspect(row)
            if not state.persistent or state.identity is None:
                continue
            before = {attr.key: attr.history.deleted[0] for attr in state.attrs if attr.history.deleted}
            if before:
                loaded.setdefault(type(row), {})[state.identity[0]] = before
        with self.session.no_autoflush:
            for model in sorted(loaded, key=lambda m: str(m.__tablename__)):
                changed = loaded[model]
                columns = sorted({key for before in changed.values() for key in before})
                primary_key = model.__mapper__.primary_key[0]
                for chunk in _chunks(set(changed)):
                    current = {found[0]: found[1:] for found in self.session.execute(
                        select(primary_key, *(getattr(model, c) for c in columns)).where(primary_key.in_(chunk))
                        .order_by(primary_key).with_for_update())}
                    for key in chunk:
                        now = current.get(key)
                        if now is None or any(
                                column in changed[key] and value != changed[key][column]
                                for column, value in zip(columns, now, strict=True)):
                            raise ConcurrentChange(f"{model.__tablename__} {key} changed while the batch ran")

    def forget(self) -> None:
        """After a rollback: what was loaded or added may no longer be so."""
        self.rows.clear()
        self.subscriptions.clear()


def _chunks(keys: set[Any]) -> Iterator[list[Any]]:
    ordered = sorted(keys)
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start:start + _CHUNK]


_current: contextvars.ContextVar[BatchRows | None] = contextvars.ContextVar("batch_rows", default=None)


def _batch(session: Session) -> BatchRows | None:
    rows = _current.get()
    return rows if rows is not None and rows.session is session else None


@contextmanager
def loaded(session: Session, events: Sequence[dict[str, Any]]) -> Iterator[BatchRows]:
    """Load the batch's rows into `session` and serve lookups from them inside the block."""
    rows = BatchRows(session)
    rows.prefetch(events)
    token = _current.set(rows)
    try:
        yield rows
    finally:
        _current.reset(token)


def get(session: Session, model: Any, key: str) -> Any | None:
    """`session.get(model, key)`, from the batch's rows while one is applied."""
    rows = _batch(session)
    return rows.get(model, key) if rows is not None else session.get(model, key)


def subscription(session: Session, stripe_subscription_id: str) -> UserSubscription | None:
    """The subscription row by its Stripe id, from the batch's rows while one is applied."""
    rows = _batch(session)
    if rows is not None:
        return rows.subscription(stripe_subscription_id)
    found: UserSubscription | None = session.execute(
        select(UserSubscription).where(UserSubscription.stripe_subscription_id == stripe_subscription_id)
    ).scalar_one_or_none()
    return found


def active(session: Session) -> bool:
    """True while a batch's rows serve `session`'s lookups (a row added is found without a flush)."""
    return _batch(session) is not None


def add(session: Session, row: Any) -> None:
    """`session.add(row)` (a row the session holds already is left as it is), and the batch's later
    lookups find it."""
    if row not in session:
        session.add(row)
    rows = _batch(session)
    if rows is not None:
        rows.add(row)
