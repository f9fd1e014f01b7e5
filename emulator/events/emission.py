"""Events: one per change, with previous_attributes holding exactly what changed."""

from __future__ import annotations

import copy
import json

from emulator.events.ordering import EventOrder
from emulator.state import Json, State, new_id

API_VERSION = "2026-10-28.endive"


def changed_fields(before: Json, after: Json) -> Json:
    """Stripe's previous_attributes: the old value of each changed field; inside a hash only the
    changed keys (null for a key that was added); an array that changed is given whole."""
    previous: Json = {}
    for key in before.keys() | after.keys():
        if key.startswith("_"):
            continue
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            previous[key] = changed_fields(old, new)
        else:
            previous[key] = copy.deepcopy(old)
    return previous


class Events(State):
    def reset(self) -> None:
        with self.lock:
            super().reset()
            self.event_order = EventOrder()  # the events by created, for GET /v1/events

    def load_events(self, events: list[Json]) -> None:
        """Hold `events` (a saved state's, in creation order) and continue their `_seq`."""
        self.events = events
        self.event_order.rebuild(events)
        self._seq = max([int(o.get("_seq", 0)) for kind in self.objects.values() for o in kind.values()],
                        default=getattr(self, "_seq", 0))

    # --- events --------------------------------------------------------------------
    def emit(self, event_type: str, obj: Json, *, created: int, previous: Json | None = None) -> Json | None:
        if event_type in set(self.misbehave.get("suppress_events") or []):
            return None
        # A JSON round trip snapshots the object several times faster than deepcopy.
        # A snapshot; it is fitted to Stripe's catalogue when served or delivered.
        data: Json = {"object": json.loads(json.dumps(obj))}
        if event_type == "invoice.upcoming":
            data["object"].pop("id", None)  # Stripe: the upcoming invoice has no id
        if previous:
            data["previous_attributes"] = json.loads(json.dumps(previous))
        event = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": dict(self._current_request),
            "type": event_type,
            "_delivery_success": None,
        }
        self.events.append(event)
        self.put("event", event)  # gives it its _seq
        self.event_order.add(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def snapshot(self, obj: Json) -> Json:
        """The object's state now (for previous_attributes; private keys are ignored there)."""
        return json.loads(json.dumps(obj))  # type: ignore[no-any-return]

    def emit_update(self, event_type: str, obj: Json, before: Json, *, created: int,
                    always: bool = False) -> Json | None:
        """Emit `event_type` with previous_attributes holding exactly what changed since `before`;
        nothing at all for a no-op update (unless `always`, for events such as charge.refunded)."""
        previous = changed_fields(before, self.snapshot(obj))
        if not previous and not always:
            return None
        return self.emit(event_type, obj, created=created, previous=previous)
