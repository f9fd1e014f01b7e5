"""Which Stripe objects a batch of events must re-read, and reading them ahead, concurrently,
within the gateway's rate budget.

An event carries a snapshot of its object as of the event. Stripe does not guarantee delivery
order, so that copy can be stale, but only in one way the billing DB cannot sort out itself:
every mapper keeps the newest state by the event's `created` (services/stripe_mapping.py), so
an older copy arriving late never wins, and a newer event for the object, already stored,
brings its own newer copy. What `created` cannot order is two events for the same object in
the same second with different copies (an invoice that needed action, then was paid). When
`previous_attributes` tells which copy is the newest (created, then updated), every event of
that second applies that copy; only when nothing tells is the object re-read, once for all.
Objects an event names but does not carry (a dispute's charge, a customer the DB has not seen,
a checkout's subscription) are read as before. All of a batch's reads go out together on a
small thread pool; the gateway's shared limiter keeps them under 80 % of the mode's rate
limit, and a handler asking for one finds it already read.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from db.models import Customer, StripeEvent
from services.fast_json import loads_text
from services.stripe_gateway import StripeGateway
from services.stripe_objects import object_id

READ_THREADS = 4

# The gateway read for each kind of object a handler may re-read.
READERS: dict[str, Callable[[StripeGateway, str], dict[str, Any]]] = {
    "customer": lambda g, i: g.retrieve_customer(i),
    "subscription": lambda g, i: g.retrieve_subscription(i),
    "invoice": lambda g, i: g.retrieve_invoice(i),
    "charge": lambda g, i: g.retrieve_charge(i),
    "dispute": lambda g, i: g.retrieve_dispute(i),
    "radar.early_fraud_warning": lambda g, i: g.retrieve_early_fraud_warning(i),
    "refund": lambda g, i: g.retrieve_refund(i),
}

# The object an event type carries, by prefix (most specific first), as in event_handlers.
_KIND_BY_PREFIX = (
    ("checkout.session.", None), ("customer.subscription.", "subscription"), ("invoice.", "invoice"),
    ("charge.dispute.", "dispute"), ("charge.refund.", "refund"), ("charge.", "charge"), ("refund.", "refund"),
    ("radar.early_fraud_warning.", "radar.early_fraud_warning"),
)


def carried_kind(event_type: str) -> str | None:
    return next((kind for prefix, kind in _KIND_BY_PREFIX if event_type.startswith(prefix)), None)


@dataclass
class ReadPlan:
    """For one batch: the objects whose event copy may be stale, and what was read ahead."""

    stale: set[str] = field(default_factory=set)
    newest: dict[str, dict[str, Any]] = field(default_factory=dict)
    read: dict[tuple[str, str], dict[str, Any] | Exception] = field(default_factory=dict)

    def copy_is_current(self, object_id_: str) -> bool:
        return object_id_ not in self.stale


_current: contextvars.ContextVar[ReadPlan | None] = contextvars.ContextVar("read_plan", default=None)


def current_plan() -> ReadPlan | None:
    """The plan of the batch being applied; None outside one (a direct handle_event call, which
    then re-reads as it always did)."""
    return _current.get()


@contextmanager
def applying(plan: ReadPlan) -> Iterator[ReadPlan]:
    token = _current.set(plan)
    try:
        yield plan
    finally:
        _current.reset(token)


def read(kind: str, key: str, fetch: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`fetch()` unless the batch already read this object (its error, e.g. resource_missing, too)."""
    plan = current_plan()
    found = plan.read.get((kind, key)) if plan is not None else None
    if found is None:
        return fetch()
    if isinstance(found, Exception):
        raise found
    return found


def _newest_copy(payloads: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The one copy no other same-second event followed, or None when that cannot be told.
    An `*.updated` event follows the copy whose fields hold the values its `previous_attributes`
    says they had (created, then updated, in one second: the update is the newer)."""
    def follows(later: dict[str, Any], copy: dict[str, Any]) -> bool:
        previous = (later.get("data") or {}).get("previous_attributes") or {}
        return bool(previous) and all(copy.get(key) == value for key, value in previous.items())

    newest = [p for p in payloads
              if not any(other is not p and follows(other, p["data"]["object"]) for other in payloads)]
    return newest[0]["data"]["object"] if len(newest) == 1 else None


def stale_objects(session: Session, events: Sequence[dict[str, Any]], plan: ReadPlan) -> None:
    """Fill `plan`: for each object whose newest stored second holds several events with different
    copies, the newest copy when `previous_attributes` tells it (every event of that second then
    applies it, so their order does not matter), else the object goes in `plan.stale`: re-read."""
    ids = {str(e["data"]["object"].get("id")) for e in events if e["data"]["object"].get("id")}
    if not ids:
        return
    newest: dict[str, tuple[int, list[str]]] = {}
    rows = session.execute(select(StripeEvent.object_id, StripeEvent.created, StripeEvent.id)
                           .where(StripeEvent.object_id.in_(ids))).all()
    for obj_id, created, event_id in rows:
        if obj_id is None:
            continue
        second = int(created.timestamp())
        best = newest.get(obj_id)
        if best is None or second > best[0]:
            newest[obj_id] = (second, [event_id])
        elif second == best[0]:
            best[1].append(event_id)
    wanted = [event_id for _s, event_ids in newest.values() if len(event_ids) > 1 for event_id in event_ids]
    if not wanted:
        return
    # The batch's own events are decoded already; the others are read as JSON text for orjson.
    mine = {str(e["id"]): e for e in events if e.get("id")}
    tied: dict[str, list[dict[str, Any]]] = {}
    for event_id in wanted:
        if event_id in mine:
            event = mine[event_id]
            tied.setdefault(str(event["data"]["object"].get("id")), []).append(event)
    others = [event_id for event_id in wanted if event_id not in mine]
    if others:
        for obj_id, text in session.execute(select(StripeEvent.object_id, cast(StripeEvent.payload, Text))
                                            .where(StripeEvent.id.in_(others))).all():
            tied.setdefault(str(obj_id), []).append(loads_text(text))
    for obj_id, payloads in tied.items():
        copies = [p["data"]["object"] for p in payloads]
        if all(c == copies[0] for c in copies[1:]):
            continue
        copy = _newest_copy(payloads)
        if copy is None:
            plan.stale.add(obj_id)
        else:
            plan.newest[obj_id] = copy


def planned_reads(session: Session, events: Sequence[dict[str, Any]], stale: set[str],
                  refetch: Callable[[dict[str, Any]], bool]) -> set[tuple[str, str]]:
    """What the handlers will ask Stripe for, so it can be read ahead in one go."""
    wanted: set[tuple[str, str]] = set()
    customers: set[str] = set()
    for event in events:
        obj = event["data"]["object"]
        kind = carried_kind(event["type"])
        customer = object_id(obj.get("customer"))
        if customer:
            customers.add(customer)
        if event["type"].startswith("checkout.session."):
            subscription = object_id(obj.get("subscription"))
            if subscription:
                wanted.add(("subscription", subscription))
        if not refetch(event):
            continue
        if kind and obj.get("id") in stale:
            wanted.add((kind, str(obj["id"])))
        charge = object_id(obj.get("charge"))
        if charge and kind in ("dispute", "radar.early_fraud_warning", "refund"):
            wanted.add(("charge", charge))  # not carried by the event: read as the handler always has
    if customers:
        known = set(session.execute(select(Customer.id).where(Customer.id.in_(customers))).scalars())
        wanted |= {("customer", c) for c in customers - known}
    return wanted


def read_ahead(gateway: StripeGateway, wanted: set[tuple[str, str]], plan: ReadPlan,
               threads: int = READ_THREADS) -> None:
    """Read every wanted object concurrently; each result (or its error) lands in `plan.read`."""
    def one(item: tuple[str, str]) -> dict[str, Any] | Exception:
        try:
            return READERS[item[0]](gateway, item[1])
        except Exception as error:  # kept for the handler that asks, which decides what it means
            return error

    todo = sorted(wanted)
    if len(todo) == 1:
        plan.read[todo[0]] = one(todo[0])
        return
    if todo:
        with ThreadPoolExecutor(min(threads, len(todo)), thread_name_prefix="event-read") as pool:
            for item, result in zip(todo, pool.map(one, todo), strict=True):
                plan.read[item] = result
