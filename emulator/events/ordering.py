"""The events in `created` order, so a `GET /v1/events` page costs O(log N + page) instead of a
filter and sort over every event held.

Events are kept ascending by (created, _seq): `_seq` is the insertion counter every stored
object gets (state.py), so events created in the same second keep the order they were made in.
Events are appended in creation order, but `created` is not monotonic across them (a customer on
a test clock lives at its frozen time), so an out-of-order one is inserted at its place. A page
is read newest first, as Stripe lists: the `created` bounds and the cursor are bisected, and the
other filters (type, types, delivery_success) are tested only inside that window, stopping once
the page (and the one item that says `has_more`) is found.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any

from emulator.wire.protocol import StripeApiError, created_bounds, missing, to_int

Json = dict[str, Any]
Key = tuple[int, int]


def _key(event: Json) -> Key:
    return int(event.get("created", 0)), int(event.get("_seq", 0))


class EventOrder:
    """Every event, ascending by (created, _seq), with the keys beside them for bisecting."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.events: list[Json] = []

    def add(self, event: Json) -> None:
        key = _key(event)
        if not self.keys or key >= self.keys[-1]:
            self.keys.append(key)
            self.events.append(event)
            return
        at = bisect_right(self.keys, key)
        self.keys.insert(at, key)
        self.events.insert(at, event)

    def rebuild(self, events: list[Json]) -> None:
        ordered = sorted(events, key=_key)
        self.keys = [_key(e) for e in ordered]
        self.events = ordered

    def window(self, bounds: dict[str, int] | None) -> tuple[int, int]:
        """The index range [lo, hi) of the events whose `created` is within `bounds`."""
        lo, hi = 0, len(self.keys)
        if not bounds:
            return lo, hi
        floors = [bounds[op] + step for op, step in (("gte", 0), ("gt", 1)) if op in bounds]
        ceilings = [bounds[op] + step for op, step in (("lt", 0), ("lte", 1)) if op in bounds]
        floor, ceiling = max(floors, default=None), min(ceilings, default=None)  # created in [floor, ceiling)
        if floor is not None:
            lo = bisect_left(self.keys, (floor,))  # (n,) sorts before every (n, seq)
        if ceiling is not None:
            hi = max(lo, bisect_left(self.keys, (ceiling,)))
        return lo, hi

    def position(self, event: Json) -> int | None:
        """Where `event` itself is held (None if it is not)."""
        key = _key(event)
        at = bisect_left(self.keys, key)
        while at < len(self.keys) and self.keys[at] == key:
            if self.events[at] is event:
                return at
            at += 1
        return None


def list_page(order: EventOrder, objects: dict[str, Json], url: str, params: Json,
              keep: Callable[[Json], bool]) -> Json:
    """One page of the events `keep` accepts within the `created` bounds, newest first, with
    `starting_after` / `ending_before` and `has_more` as `wire.protocol.list_object` gives them."""
    lo, hi = order.window(created_bounds(params.get("created")))
    limit = to_int(params.get("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise StripeApiError(
            400, "Invalid integer: limit must be between 1 and 100", code="parameter_invalid_integer", param="limit"
        )

    def accepted(event: Json) -> bool:
        return not event.get("deleted") and keep(event)

    def cursor(name: str) -> int:
        event_id = params[name]
        event = objects.get(event_id)
        at = order.position(event) if event is not None and accepted(event) else None
        if at is None or not lo <= at < hi:
            raise missing("object", event_id, name)
        return at

    found: list[Json] = []
    if params.get("starting_after") or not params.get("ending_before"):
        start = cursor("starting_after") if params.get("starting_after") else hi
        for at in range(start - 1, lo - 1, -1):  # older and older
            if accepted(order.events[at]):
                found.append(order.events[at])
                if len(found) > limit:
                    break
        page = found[:limit]
    else:
        end = cursor("ending_before")
        for at in range(end + 1, hi):  # newer and newer, the nearest first
            if accepted(order.events[at]):
                found.append(order.events[at])
                if len(found) > limit:
                    break
        page = found[:limit][::-1]
    return {"object": "list", "url": url, "has_more": len(found) > limit, "data": page}
