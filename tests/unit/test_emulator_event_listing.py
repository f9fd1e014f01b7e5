"""GET /v1/events reads its page from the events kept in `created` order (emulator/events/ordering.py):
every answer — page, has_more, errors — is the one the plain filter-and-sort over all events gives,
with many events sharing one `created` second, some created out of order (a test clock's past),
cursors in both directions and the filters combined."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from emulator.engine import Engine
from emulator.events import routes as event_routes
from emulator.wire.protocol import StripeApiError
from emulator.wire.routes import list_kind

TYPES = ("invoice.paid", "invoice.payment_failed", "charge.succeeded", "charge.refunded",
         "customer.subscription.updated", "charge.dispute.created")
BASE = 1_800_000_000


def naive_list(engine: Engine, params: dict[str, Any]) -> dict[str, Any]:
    """The listing as it was: every event filtered (the route's own filter), sorted newest first, then paged."""
    return list_kind(engine, "event", "/v1/events", params, {"type", "types", "delivery_success"},
                     event_routes.event_filter(params))


def answer(fn: Any, engine: Engine, params: dict[str, Any]) -> tuple[Any, ...]:
    try:
        listed = fn(engine, params)
    except StripeApiError as error:
        return ("error", error.status, error.body)
    return ("page", [e["id"] for e in listed["data"]], listed["has_more"], listed["url"])


def listed(engine: Engine, params: dict[str, Any]) -> dict[str, Any]:
    return event_routes.events_list(engine, {}, params)


@pytest.fixture(scope="module")
def engine() -> Engine:
    rng = random.Random(23)
    engine = Engine()
    for n in range(600):
        # Mostly in order, six events a second (many ties); every 15th made at an
        # earlier time (a customer on a test clock), so appends are not always in created order.
        created = BASE + n // 6 - (rng.randrange(1, 60) if n % 15 == 0 else 0)
        event = engine.emit(rng.choice(TYPES), {"id": f"obj_{n % 97}", "object": "thing"}, created=created)
        assert event is not None
        event["_delivery_success"] = rng.choice((None, True, False))
    return engine


def _random_params(rng: random.Random, engine: Engine) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": str(rng.choice((1, 2, 3, 7, 10, 25, 100)))}
    span = 600 // 6
    pick = rng.random()
    if pick < 0.15:
        params["created"] = str(BASE + rng.randrange(-5, span))
    elif pick < 0.6:
        bounds: dict[str, str] = {}
        for op in rng.sample(("gt", "gte", "lt", "lte"), rng.randrange(1, 4)):
            bounds[op] = str(BASE + rng.randrange(-70, span + 5))
        params["created"] = bounds
    pick = rng.random()
    if pick < 0.25:
        params["type"] = rng.choice((*TYPES, "charge.*", "invoice.*", "charge.dispute.*", "nothing.here"))
    elif pick < 0.45:
        params["types"] = rng.sample((*TYPES, "charge.*"), rng.randrange(1, 3))
    if rng.random() < 0.3:
        params["delivery_success"] = rng.choice(("true", "false"))
    pick = rng.random()
    ids = [e["id"] for e in engine.events]
    if pick < 0.35:
        params["starting_after"] = rng.choice(ids)
    elif pick < 0.7:
        params["ending_before"] = rng.choice(ids)
    return params


def test_every_page_is_the_one_the_filter_and_sort_gives(engine: Engine) -> None:
    rng = random.Random(7)
    pages = errors = 0
    for _ in range(1500):
        params = _random_params(rng, engine)
        expected = answer(naive_list, engine, params)
        assert answer(listed, engine, params) == expected, params
        pages += expected[0] == "page" and bool(expected[1])
        errors += expected[0] == "error"
    assert pages > 400 and errors > 150  # both kinds of answer were compared, not only empty pages


@pytest.mark.parametrize("params", [
    {},
    {"type": "charge.*"},
    {"types": ["invoice.paid", "charge.refunded"], "delivery_success": "true"},
    {"created": {"gte": str(BASE + 20), "lt": str(BASE + 60)}, "type": "invoice.*"},
    {"created": str(BASE + 30)},
    {"created": {"gt": str(BASE + 90)}, "delivery_success": "false"},
])
def test_walking_every_page_both_ways_gives_the_same_pages(engine: Engine, params: dict[str, Any]) -> None:
    for limit in ("2", "7", "100"):
        for cursor, take in (("starting_after", -1), ("ending_before", 0)):
            query: dict[str, Any] = {**params, "limit": limit}
            if cursor == "ending_before":  # from the oldest event up
                every = naive_list(engine, {**params, "limit": "100"})
                oldest = every["data"][-1]["id"] if every["data"] else None
                while every["has_more"]:
                    every = naive_list(engine, {**params, "limit": "100", "starting_after": oldest})
                    oldest = every["data"][-1]["id"] if every["data"] else oldest
                if oldest is None:
                    continue
                query[cursor] = oldest
            seen = 0
            while True:
                expected = answer(naive_list, engine, query)
                assert answer(listed, engine, query) == expected, query
                assert expected[0] == "page"
                seen += len(expected[1])
                if not expected[2]:
                    break
                query[cursor] = expected[1][take]
            assert seen > 0


def test_errors_are_stripes(engine: Engine) -> None:
    other = engine.events[0]
    for params in ({"type": "invoice.paid", "types": ["charge.succeeded"]}, {"delivery_success": "maybe"},
                   {"colour": "red"}, {"created": {"around": str(BASE)}}, {"created": {"gte": "soon"}},
                   {"limit": "0"}, {"limit": "101"}, {"starting_after": "evt_nope"},
                   {"ending_before": other["id"], "type": "no.such"},
                   {"starting_after": other["id"], "created": {"gt": str(other["created"])}}):
        expected = answer(naive_list, engine, params)
        assert expected[0] == "error", params
        assert answer(listed, engine, params) == expected, params


def test_a_saved_state_loaded_again_keeps_the_order_and_the_sequence() -> None:
    first = Engine()
    for n in range(30):
        first.emit("invoice.paid", {"id": f"in_{n}"}, created=BASE + (n % 3))
    saved = json.loads(json.dumps(first.objects))  # as emulator/server.py saves and loads it
    second = Engine()
    second.objects = saved
    second.load_events([saved["event"][e["id"]] for e in reversed(first.events)])  # any order: it is sorted
    after = second.emit("invoice.paid", {"id": "in_new"}, created=BASE + 2)
    assert after is not None
    params = {"limit": "100"}
    assert answer(listed, second, params) == answer(naive_list, second, params)
    assert answer(listed, second, params)[1][1:] == answer(listed, first, params)[1]
    newest = listed(second, {"limit": "1"})["data"][0]
    assert newest["id"] == after["id"]  # made last in the newest second: listed first
