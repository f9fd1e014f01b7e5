"""The emulator's state: objects by kind under one re-entrant lock, per-customer time (a customer on a
test clock lives at its frozen time), and the hooks area modules register."""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from emulator.billing import calendar as billing_calendar
from emulator.billing import retry_schedule
from emulator.wire.protocol import missing

if TYPE_CHECKING:
    from emulator.engine import Engine

DAY = 86_400


Json = dict[str, Any]


class SubscriptionWork(Protocol):
    """Scheduled work other modules add to a subscription's timeline (subscription schedules'
    phase switches): `due` names the time of the next piece at or before `until`, `run` does it."""

    def due(self, engine: Engine, subscription: Json, until: int) -> int | None: ...

    def run(self, engine: Engine, subscription: Json, at: int) -> None: ...


# Registered by the modules that add such work; run before a renewal due at the same second.
SUBSCRIPTION_WORK: list[SubscriptionWork] = []


# Called as (engine, clock_id, frozen_time) when a test clock advances, before its subscriptions.
CLOCK_WORK: list[Callable[[Engine, str, int], None]] = []


# Called as (engine, subscription, params, now) when a subscription is created or updated, before its
# event (the discounts module applies the `discounts` param).
SUBSCRIPTION_PARAMS: list[Callable[[Engine, Json, Json, int], None]] = []


# Called as (engine, invoice, subscription, now) on a new subscription invoice before it is stored
# (discounts: total_discount_amounts, line discount_amounts, totals).
INVOICE_ADJUST: list[Callable[[Engine, Json, Json, int], None]] = []


# Called as (engine, invoice) after an invoice item changed a draft's lines (discounts recompute).
INVOICE_LINES_CHANGED: list[Callable[[Engine, Json], None]] = []


# Modules that keep objects derived from another one register here: called after each put of that kind.
PUT_HOOKS: dict[str, list[Callable[[Engine, Json], None]]] = {}


def public_copy(obj: Json) -> Json:
    """A snapshot of `obj` without the emulator's private (`_`) keys, for embedding in another object."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"



class State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.objects: dict[str, dict[str, Json]] = {}
            self.events: list[Json] = []
            self.misbehave: Json = {}
            self.on_event: Callable[[Json], None] | None = getattr(self, "on_event", None)
            self.pending_prorations: dict[str, list[Json]] = {}
            self.invoices_by_subscription: dict[str, list[str]] = {}
            self._current_request: Json = {"id": None, "idempotency_key": None}
            self.billing_config: Json = {"upcoming_days": billing_calendar.DEFAULT_UPCOMING_DAYS,
                                         **retry_schedule.default_config()}

    # --- storage -----------------------------------------------------------------
    def put(self, kind: str, obj: Json) -> Json:
        if "_seq" not in obj:  # insertion order breaks ties between objects created in the same second
            self._seq = getattr(self, "_seq", 0) + 1
            obj["_seq"] = self._seq
        self.objects.setdefault(kind, {})[obj["id"]] = obj
        for hook in PUT_HOOKS.get(kind, ()):  # e.g. a charge's balance transaction (emulator/payments/balance.py)
            hook(self.as_engine(), obj)
        return obj

    def as_engine(self) -> Engine:
        """The whole engine, for the hooks area modules register (they take an Engine); the
        state is only ever built as part of one."""
        return cast("Engine", self)

    def later(self, delay_s: float, action: Callable[[], None]) -> None:
        """Run `action` under the lock shortly after this request, like Stripe's async work."""

        def run() -> None:
            with self.lock:
                self._current_request = {"id": None, "idempotency_key": None}
                action()

        timer = threading.Timer(delay_s, run)
        timer.daemon = True
        timer.start()

    def get(self, kind: str, object_id: str, name: str | None = None, param: str = "id") -> Json:
        obj = self.objects.get(kind, {}).get(object_id)
        if obj is None or obj.get("deleted"):
            raise missing(name or kind, object_id, param)
        return obj

    def all(self, kind: str) -> list[Json]:
        return [o for o in self.objects.get(kind, {}).values() if not o.get("deleted")]

    def find(self, object_id: str) -> Json | None:
        """Resolve any id (for expand)."""
        for kind in self.objects.values():
            if object_id in kind and not kind[object_id].get("deleted"):
                return kind[object_id]
        return None

    # --- time ----------------------------------------------------------------------
    def now_for(self, customer_id: str | None) -> int:
        if customer_id:
            customer = self.objects.get("customer", {}).get(customer_id)
            clock_id = customer.get("test_clock") if customer else None
            if clock_id and clock_id in self.objects.get("test_clock", {}):
                return int(self.objects["test_clock"][clock_id]["frozen_time"])
        return int(time.time())
