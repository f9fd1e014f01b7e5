"""Subscription schedules: /v1/subscription_schedules create (from phases or `from_subscription`),
retrieve, update (phases, end_behavior, metadata), release, cancel, list.

Behaviour follows Stripe's API reference and its subscription-schedule guide:
- Phases run back to back: the first starts at `start_date` (`now` or a timestamp; a schedule
  whose start is in the future is `not_started` and creates its subscription when that time comes),
  each ends at its `end_date` or after its `duration`, and a phase with neither lasts one period of
  its first price. `from_subscription` builds one phase from the subscription's current items and
  period, `end_behavior=release`, and can't be combined with `phases`.
- At a phase's start the subscription takes the phase's items (before a renewal due at the same
  second, so the renewal bills the new phase); a switch inside a billing period prorates per the
  phase's `proration_behavior`. The schedule's `current_phase` moves on and
  `subscription_schedule.updated` is emitted. On test clocks this happens when the clock passes
  the phase's start.
- When the last phase ends: `end_behavior=release` leaves the subscription running, the schedule
  `released` (`released_at`, `released_subscription`, `subscription_schedule.released`);
  `end_behavior=cancel` cancels the subscription and the schedule is `completed`
  (`completed_at`, `subscription_schedule.completed`).
- release: only a `not_started` or `active` schedule; the subscription stays, the schedule's
  `subscription` moves to `released_subscription`. cancel: only `not_started` or `active`; the
  subscription is canceled at once, the schedule `canceled` (`subscription_schedule.canceled`).
"""

from __future__ import annotations

from typing import Any

from emulator import state
from emulator.billing import calendar as billing_calendar
from emulator.billing.subscription_items import _proration
from emulator.engine import Engine
from emulator.state import Json, new_id
from emulator.wire.protocol import StripeApiError, check_params, list_object, one_of, to_bool, to_int
from emulator.wire.routes import LIST_PARAMS, created_filter, render, retrieve, route

KIND = "subscription_schedule"
END_BEHAVIORS = ("release", "cancel")
PRORATION_BEHAVIORS = ("create_prorations", "none", "always_invoice")
OPEN = ("not_started", "active")


def _default_settings() -> Json:
    return {
        "application_fee_percent": None, "automatic_tax": {"disabled_reason": None, "enabled": False,
                                                           "liability": None},
        "billing_cycle_anchor": "automatic", "billing_thresholds": None,
        "collection_method": "charge_automatically", "default_payment_method": None, "description": None,
        "invoice_settings": {"account_tax_ids": None, "days_until_due": None, "issuer": {"type": "self"}},
        "on_behalf_of": None, "transfer_data": None,
    }


def _phase_items(engine: Engine, raw: Any, index: int) -> list[Json]:
    if not isinstance(raw, list) or not raw:
        raise StripeApiError(400, f"Missing required param: phases[{index}][items].", code="parameter_missing",
                             param=f"phases[{index}][items]")
    items = []
    for position, item in enumerate(raw):
        param = f"phases[{index}][items][{position}][price]"
        if not isinstance(item, dict) or not item.get("price"):
            raise StripeApiError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)
        price = engine._price(str(item["price"]), param)
        items.append({"billing_thresholds": None, "discounts": [], "metadata": dict(item.get("metadata") or {}),
                      "plan": price["id"], "price": price["id"],
                      "quantity": to_int(item.get("quantity", 1), f"phases[{index}][items][{position}][quantity]",
                                         minimum=0),
                      "tax_rates": []})
    return items


def _phase_end(engine: Engine, phase_in: Json, items: list[Json], start: int, index: int) -> int:
    if phase_in.get("end_date") not in (None, ""):
        end = to_int(phase_in["end_date"], f"phases[{index}][end_date]")
    elif isinstance(phase_in.get("duration"), dict):
        duration = phase_in["duration"]
        interval = str(duration.get("interval") or "")
        if interval not in billing_calendar.INTERVALS:
            raise StripeApiError(400, f"Invalid phases[{index}][duration][interval]", code="parameter_invalid_string",
                                 param=f"phases[{index}][duration][interval]")
        count = to_int(duration.get("interval_count", 1), f"phases[{index}][duration][interval_count]", minimum=1)
        end = billing_calendar.boundary(start, interval, count, 1)
    else:
        price = engine._price(str(items[0]["price"]), f"phases[{index}][items][0][price]")
        end = billing_calendar.period_end(price, start, start)
    if end <= start:
        raise StripeApiError(400, f"The phase's end_date must be after its start_date (phases[{index}]).",
                             param=f"phases[{index}][end_date]")
    return end


def _phases(engine: Engine, raw: Any, start: int) -> list[Json]:
    if not isinstance(raw, list) or not raw:
        raise StripeApiError(400, "Missing required param: phases.", code="parameter_missing", param="phases")
    phases = []
    for index, phase_in in enumerate(raw):
        if not isinstance(phase_in, dict):
            raise StripeApiError(400, f"Invalid phases[{index}]", param=f"phases[{index}]")
        items = _phase_items(engine, phase_in.get("items"), index)
        behavior = str(phase_in.get("proration_behavior") or "create_prorations")
        if behavior not in PRORATION_BEHAVIORS:
            raise StripeApiError(400, f"Invalid phases[{index}][proration_behavior]", code="parameter_invalid_string",
                                 param=f"phases[{index}][proration_behavior]")
        end = _phase_end(engine, phase_in, items, start, index)
        price = engine._price(str(items[0]["price"]), f"phases[{index}][items][0][price]")
        phases.append({
            "add_invoice_items": [], "application_fee_percent": None, "automatic_tax": None,
            "billing_cycle_anchor": None, "billing_thresholds": None, "collection_method": None,
            "currency": price["currency"], "default_payment_method": None, "default_tax_rates": [],
            "description": phase_in.get("description"), "discounts": [], "end_date": end, "invoice_settings": None,
            "items": items, "metadata": dict(phase_in.get("metadata") or {}), "on_behalf_of": None,
            "proration_behavior": behavior, "start_date": start, "transfer_data": None, "trial_end": None,
        })
        start = end
    return phases


def _current_phase(schedule: Json, at: int) -> Json | None:
    for phase in schedule["phases"]:
        if phase["start_date"] <= at < phase["end_date"]:
            return phase  # type: ignore[no-any-return]
    return None


def _set_current(schedule: Json, at: int) -> None:
    phase = _current_phase(schedule, at) if schedule["status"] == "active" else None
    schedule["current_phase"] = {"start_date": phase["start_date"], "end_date": phase["end_date"]} if phase else None


def _apply_phase(engine: Engine, subscription: Json, phase: Json, at: int) -> None:
    """The subscription takes the phase's items; a switch inside a period prorates per the phase."""
    items = subscription["items"]["data"]
    period_start = int(items[0]["current_period_start"]) if items else at
    period_end = int(items[0]["current_period_end"]) if items else at
    prorate = phase["proration_behavior"] != "none" and period_start < at < period_end
    lines: list[Json] = []
    kept: list[Json] = []
    for wanted in phase["items"]:
        price = engine._price(str(wanted["price"]), "price")
        current = next((i for i in items if i["price"]["id"] == price["id"]), None)
        quantity = int(wanted["quantity"])
        if current is None:
            current = engine._new_item(subscription["id"], price, quantity, at, period_end)
            current["current_period_start"] = period_start
            if prorate:
                lines.append(_proration(engine, subscription, current, price, quantity, at, credit=False))
        elif int(current["quantity"]) != quantity:
            if prorate:
                lines.append(_proration(engine, subscription, current, price, int(current["quantity"]), at,
                                        credit=True))
                lines.append(_proration(engine, subscription, current, price, quantity, at, credit=False))
            current["quantity"] = quantity
        current["metadata"] = dict(wanted.get("metadata") or {})
        kept.append(current)
    if prorate:
        for gone in items:
            if all(gone is not k for k in kept):
                lines.append(_proration(engine, subscription, gone, gone["price"], int(gone["quantity"]), at,
                                        credit=True))
    before = engine.snapshot(subscription)
    subscription["items"]["data"] = kept
    engine.emit_update("customer.subscription.updated", subscription, before, created=at)
    lines = [line for line in lines if line["amount"] != 0]
    if not lines:
        return
    if phase["proration_behavior"] == "always_invoice":
        invoice = engine._invoice_for(subscription, "subscription_update", lines, at)
        engine._collect(invoice, subscription, at)
    else:
        engine.pending_prorations.setdefault(subscription["id"], []).extend(lines)


def _end(engine: Engine, schedule: Json, at: int) -> None:
    subscription = engine.objects.get("subscription", {}).get(schedule.get("subscription") or "")
    if schedule["end_behavior"] == "cancel":
        if subscription is not None and subscription["status"] != "canceled":
            engine.cancel_subscription(subscription["id"], at=at)
        schedule.update({"status": "completed", "completed_at": at, "current_phase": None})
        engine.emit("subscription_schedule.completed", schedule, created=at)
        return
    _release(engine, schedule, subscription, at)


def _release(engine: Engine, schedule: Json, subscription: Json | None, at: int) -> None:
    if subscription is not None:
        before = engine.snapshot(subscription)
        subscription["schedule"] = None
        engine.emit_update("customer.subscription.updated", subscription, before, created=at)
    schedule.update({"status": "released", "released_at": at, "current_phase": None,
                     "released_subscription": schedule.get("subscription"), "subscription": None})
    engine.emit("subscription_schedule.released", schedule, created=at)


def _schedule_of(engine: Engine, subscription: Json) -> Json | None:
    schedule_id = subscription.get("schedule")
    schedule = engine.objects.get(KIND, {}).get(schedule_id) if schedule_id else None
    return schedule if schedule is not None and schedule["status"] == "active" else None


def _next_boundary(schedule: Json) -> int | None:
    """The next phase start (or the last phase's end) not yet handled, where work is due."""
    times = [int(p["start_date"]) for p in schedule["phases"][1:]] + [int(schedule["phases"][-1]["end_date"])]
    pending = [t for t in times if t > int(schedule.get("_done_until") or 0)]
    return min(pending) if pending else None


class _PhaseWork:
    """The schedule's phase switches and end on the subscription's timeline."""

    def due(self, engine: Engine, subscription: Json, until: int) -> int | None:
        schedule = _schedule_of(engine, subscription)
        if schedule is None:
            return None
        at = _next_boundary(schedule)
        return at if at is not None and at <= until else None

    def run(self, engine: Engine, subscription: Json, at: int) -> None:
        schedule = _schedule_of(engine, subscription)
        if schedule is None:
            return
        schedule["_done_until"] = at
        before = engine.snapshot(schedule)
        phase = _current_phase(schedule, at)
        if phase is None:
            _end(engine, schedule, at)
            return
        _apply_phase(engine, subscription, phase, at)
        _set_current(schedule, at)
        engine.emit_update("subscription_schedule.updated", schedule, before, created=at)


def _start(engine: Engine, schedule: Json, at: int, *, emit: bool = True) -> None:
    """A not_started schedule reaches its start: its subscription is created from the first phase."""
    phase = schedule["phases"][0]
    before = engine.snapshot(schedule)
    subscription = engine.create_subscription(
        {"customer": schedule["customer"], "metadata": dict(phase["metadata"]),
         "items": [{"price": i["price"], "quantity": i["quantity"]} for i in phase["items"]]}, now=at)
    subscription["schedule"] = schedule["id"]
    schedule.update({"status": "active", "subscription": subscription["id"], "_done_until": at})
    _set_current(schedule, at)
    if emit:
        engine.emit_update("subscription_schedule.updated", schedule, before, created=at)


def _clock_work(engine: Engine, clock_id: str, frozen_time: int) -> None:
    customers = {c["id"] for c in engine.all("customer") if c.get("test_clock") == clock_id}
    for schedule in sorted(engine.all(KIND), key=lambda s: s["created"]):
        if schedule["status"] == "not_started" and schedule["customer"] in customers and \
                int(schedule["phases"][0]["start_date"]) <= frozen_time:
            _start(engine, schedule, int(schedule["phases"][0]["start_date"]))


state.SUBSCRIPTION_WORK.append(_PhaseWork())
state.CLOCK_WORK.append(_clock_work)


# --- routes -------------------------------------------------------------------------------------
def _get(engine: Engine, schedule_id: str) -> Json:
    return engine.get(KIND, schedule_id, KIND)


def _end_behavior(params: Json, default: str) -> str:
    value = str(params.get("end_behavior") or default)
    one_of(value, END_BEHAVIORS, "end_behavior")
    return value


@route("POST", "/v1/subscription_schedules")
def schedules_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    # default_settings, billing_mode and pause_schedules aren't modelled: refused as unknown.
    check_params(params, {"customer", "from_subscription", "phases", "start_date", "end_behavior", "metadata"})
    schedule_id = new_id("sub_sched")
    if params.get("from_subscription"):
        for name in ("phases", "start_date", "customer"):
            if name in params:
                raise StripeApiError(400, f"You cannot set `{name}` if `from_subscription` is set.", param=name)
        subscription = engine.get("subscription", str(params["from_subscription"]), "subscription",
                                  "from_subscription")
        if subscription.get("schedule"):
            raise StripeApiError(400, f"The subscription {subscription['id']} is already attached to a schedule.",
                                 param="from_subscription")
        if subscription["status"] in ("canceled", "incomplete_expired"):
            raise StripeApiError(400, "You cannot create a schedule from a canceled subscription.",
                                 param="from_subscription")
        now = engine.now_for(subscription["customer"])
        first = subscription["items"]["data"][0]
        phase_in = {"items": [{"price": i["price"]["id"], "quantity": i["quantity"], "metadata": i["metadata"]}
                              for i in subscription["items"]["data"]],
                    "end_date": first["current_period_end"], "proration_behavior": "create_prorations"}
        phases = _phases(engine, [phase_in], int(first["current_period_start"]))
        customer_id, status, subscription_id = subscription["customer"], "active", subscription["id"]
        end_behavior = "release"
    else:
        if not params.get("customer"):
            raise StripeApiError(400, "Missing required param: customer.", code="parameter_missing",
                                 param="customer")
        customer = engine.get("customer", str(params["customer"]), "customer", "customer")
        customer_id = customer["id"]
        now = engine.now_for(customer_id)
        raw_start = params.get("start_date", "now")
        start = now if raw_start in ("now", "", None) else to_int(raw_start, "start_date")
        phases = _phases(engine, params.get("phases"), start)
        status, subscription_id = ("active", None) if start <= now else ("not_started", None)
        end_behavior = _end_behavior(params, "release")
    schedule: Json = {
        "id": schedule_id, "object": KIND, "application": None,
        "billing_mode": {"flexible": None, "type": "flexible", "updated_at": now},
        "canceled_at": None, "completed_at": None, "created": now, "current_phase": None, "customer": customer_id,
        "customer_account": None, "default_settings": _default_settings(), "end_behavior": end_behavior,
        "livemode": False, "metadata": dict(params.get("metadata") or {}), "phases": phases, "released_at": None,
        "released_subscription": None, "status": status, "subscription": subscription_id,
        "test_clock": engine.objects["customer"][customer_id].get("test_clock"), "_done_until": now,
    }
    engine.put(KIND, schedule)
    if subscription_id is not None:
        subscription = engine.objects["subscription"][subscription_id]
        before = engine.snapshot(subscription)
        subscription["schedule"] = schedule_id
        _set_current(schedule, now)
        engine.emit("subscription_schedule.created", schedule, created=now)
        engine.emit_update("customer.subscription.updated", subscription, before, created=now)
    elif status == "active":
        _start(engine, schedule, now, emit=False)
        engine.emit("subscription_schedule.created", schedule, created=now)
    else:
        engine.emit("subscription_schedule.created", schedule, created=now)
    return render(engine, schedule, params)


retrieve("/v1/subscription_schedules/{id}", KIND)


@route("POST", "/v1/subscription_schedules/{id}")
def schedules_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"phases", "end_behavior", "metadata", "proration_behavior"})
    schedule = _get(engine, m["id"])
    if schedule["status"] not in OPEN:
        raise StripeApiError(400, f"You cannot update a subscription schedule that is {schedule['status']}.")
    now = engine.now_for(schedule["customer"])
    before = engine.snapshot(schedule)
    if "end_behavior" in params:
        schedule["end_behavior"] = _end_behavior(params, schedule["end_behavior"])
    if "metadata" in params:
        engine._merge_metadata(schedule, params["metadata"])
    if "phases" in params:
        raw = params["phases"]
        first = raw[0] if isinstance(raw, list) and raw and isinstance(raw[0], dict) else {}
        current = _current_phase(schedule, now) if schedule["status"] == "active" else None
        start_raw = first.get("start_date")
        if start_raw in (None, ""):
            start = int(current["start_date"]) if current else int(schedule["phases"][0]["start_date"])
        else:
            start = now if start_raw == "now" else to_int(start_raw, "phases[0][start_date]")
        if current is not None and start > now:
            raise StripeApiError(400, "The first phase of an active schedule must start at or before now "
                                      "(keep the current phase's start_date).", param="phases[0][start_date]")
        schedule["phases"] = _phases(engine, raw, start)
        subscription = engine.objects.get("subscription", {}).get(schedule.get("subscription") or "")
        phase = _current_phase(schedule, now)
        if subscription is not None and phase is not None:
            behavior = str(params.get("proration_behavior") or phase["proration_behavior"])
            _apply_phase(engine, subscription, dict(phase, proration_behavior=behavior), now)
        _set_current(schedule, now)
        schedule["_done_until"] = now
    engine.emit_update("subscription_schedule.updated", schedule, before, created=now)
    return render(engine, schedule, params)


@route("POST", "/v1/subscription_schedules/{id}/release")
def schedules_release(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"preserve_cancel_date"})
    schedule = _get(engine, m["id"])
    if schedule["status"] not in OPEN:
        raise StripeApiError(400, f"You cannot release a subscription schedule that is currently in the "
                                  f"`{schedule['status']}` status. It must be in `not_started` or `active`.")
    if "preserve_cancel_date" in params:
        to_bool(params["preserve_cancel_date"], "preserve_cancel_date")
    subscription = engine.objects.get("subscription", {}).get(schedule.get("subscription") or "")
    _release(engine, schedule, subscription, engine.now_for(schedule["customer"]))
    return render(engine, schedule, params)


@route("POST", "/v1/subscription_schedules/{id}/cancel")
def schedules_cancel(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"invoice_now", "prorate"})
    schedule = _get(engine, m["id"])
    if schedule["status"] not in OPEN:
        raise StripeApiError(400, f"You cannot cancel a subscription schedule that is currently in the "
                                  f"`{schedule['status']}` status. It must be in `not_started` or `active`.")
    now = engine.now_for(schedule["customer"])
    subscription = engine.objects.get("subscription", {}).get(schedule.get("subscription") or "")
    if subscription is not None and subscription["status"] != "canceled":
        engine.cancel_subscription(subscription["id"], at=now)
    schedule.update({"status": "canceled", "canceled_at": now, "current_phase": None})
    engine.emit("subscription_schedule.canceled", schedule, created=now)
    return render(engine, schedule, params)


@route("GET", "/v1/subscription_schedules")
def schedules_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS | {"customer", "scheduled", "canceled_at", "completed_at", "released_at",
                                        "customer_account"})
    customer = params.get("customer")
    scheduled = to_bool(params["scheduled"], "scheduled") if "scheduled" in params else None
    items = [s for s in engine.all(KIND) if (not customer or s["customer"] == customer)
             and (scheduled is None or (s["status"] == "not_started") == scheduled)]
    items = created_filter(items, params.get("created"))
    for field in ("canceled_at", "completed_at", "released_at"):
        if params.get(field) not in (None, ""):
            items = created_filter([s for s in items if s.get(field) is not None], params[field], field)
    return render(engine, list_object("/v1/subscription_schedules", items, params), params, is_list=True)


__all__ = ["KIND"]
