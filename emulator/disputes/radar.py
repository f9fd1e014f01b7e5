"""Radar value lists and their items (/v1/radar/value_lists, /v1/radar/value_list_items).

Field sets follow the pinned SDK's annotated classes (`stripe.radar.ValueList`,
`stripe.radar.ValueListItem`; a contract test compares them). Behaviour follows
Stripe's API reference: a list needs `alias` and `name`, `item_type` defaults to
`string` and is one of the SDK's enum values; listing lists filters by `alias` and
`contains` (the lists holding a value); listing items needs `value_list` and filters by
`value`; deleting a list deletes its items. A list only blocks payments when a Radar
rule references it (`Block if :card_fingerprint: in @alias`); rules are set in the
Dashboard and are not part of the API, so the emulator stores lists and never blocks.
"""

from __future__ import annotations

import typing

import stripe

from emulator.engine import Engine
from emulator.state import Json, new_id
from emulator.wire.protocol import check_params, list_object, one_of
from emulator.wire.routes import LIST_PARAMS, created_filter, public, route

LIST_KIND = "radar.value_list"
ITEM_KIND = "radar.value_list_item"
# The enum of item_type in the pinned SDK (card_fingerprint, email, ip_address, ...).
ITEM_TYPES = tuple(
    value for value in typing.get_args(typing.get_args(stripe.radar.ValueList.__annotations__["item_type"])[0])
)
# How many items a value list embeds in its `list_items` (Stripe's default page size).
EMBEDDED_ITEMS = 10


def _items_of(engine: Engine, list_id: str) -> list[Json]:
    return [i for i in engine.all(ITEM_KIND) if i["value_list"] == list_id]


def _view(engine: Engine, value_list: Json) -> Json:
    shown = dict(value_list)
    shown["list_items"] = list_object(f"/v1/radar/value_list_items?value_list={value_list['id']}",
                                      _items_of(engine, value_list["id"]), {"limit": EMBEDDED_ITEMS})
    return public(shown)


@route("POST", "/v1/radar/value_lists")
def value_lists_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"alias", "name", "item_type", "metadata"}, ("alias", "name"))
    item_type = str(params.get("item_type") or "string")
    one_of(item_type, ITEM_TYPES, "item_type")
    value_list = {
        "id": new_id("rsl"),
        "object": LIST_KIND,
        "alias": str(params["alias"]),
        "created": engine.now_for(None),
        "created_by": "",
        "item_type": item_type,
        "livemode": False,
        "metadata": dict(params.get("metadata") or {}),
        "name": str(params["name"]),
    }
    engine.put(LIST_KIND, value_list)
    return _view(engine, value_list)


@route("GET", "/v1/radar/value_lists/{id}")
def value_lists_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return _view(engine, engine.get(LIST_KIND, m["id"], LIST_KIND))


@route("POST", "/v1/radar/value_lists/{id}")
def value_lists_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"alias", "name", "metadata"})
    value_list = engine.get(LIST_KIND, m["id"], LIST_KIND)
    for field in ("alias", "name"):
        if params.get(field):
            value_list[field] = str(params[field])
    if "metadata" in params:
        engine._merge_metadata(value_list, params["metadata"])
    return _view(engine, value_list)


@route("DELETE", "/v1/radar/value_lists/{id}")
def value_lists_delete(engine: Engine, m: dict[str, str], params: Json) -> Json:
    value_list = engine.get(LIST_KIND, m["id"], LIST_KIND)
    for item in _items_of(engine, value_list["id"]):
        item["deleted"] = True
    value_list["deleted"] = True
    return {"id": m["id"], "object": LIST_KIND, "deleted": True}


@route("GET", "/v1/radar/value_lists")
def value_lists_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS | {"alias", "contains"})
    alias = params.get("alias")
    contains = params.get("contains")
    lists = [v for v in engine.all(LIST_KIND) if not alias or v["alias"] == alias]
    if contains:
        lists = [v for v in lists if any(i["value"] == contains for i in _items_of(engine, v["id"]))]
    listed = list_object("/v1/radar/value_lists", created_filter(lists, params.get("created")), params)
    listed["data"] = [_view(engine, v) for v in listed["data"]]
    return listed


# --- items -------------------------------------------------------------------------------------
@route("POST", "/v1/radar/value_list_items")
def value_list_items_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"value", "value_list"}, ("value", "value_list"))
    value_list = engine.get(LIST_KIND, str(params["value_list"]), LIST_KIND, "value_list")
    item = {
        "id": new_id("rsli"),
        "object": ITEM_KIND,
        "created": engine.now_for(None),
        "created_by": "",
        "livemode": False,
        "value": str(params["value"]),
        "value_list": value_list["id"],
    }
    engine.put(ITEM_KIND, item)
    return public(item)


@route("GET", "/v1/radar/value_list_items/{id}")
def value_list_items_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return public(engine.get(ITEM_KIND, m["id"], ITEM_KIND))


@route("DELETE", "/v1/radar/value_list_items/{id}")
def value_list_items_delete(engine: Engine, m: dict[str, str], params: Json) -> Json:
    item = engine.get(ITEM_KIND, m["id"], ITEM_KIND)
    item["deleted"] = True
    return {"id": m["id"], "object": ITEM_KIND, "deleted": True}


@route("GET", "/v1/radar/value_list_items")
def value_list_items_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS | {"value", "value_list"}, ("value_list",))
    engine.get(LIST_KIND, str(params["value_list"]), LIST_KIND, "value_list")
    value = str(params.get("value") or "").lower()
    # Stripe matches `value` with "is like"; a case-insensitive substring match here.
    items = [i for i in _items_of(engine, str(params["value_list"])) if not value or value in i["value"].lower()]
    listed = list_object("/v1/radar/value_list_items", created_filter(items, params.get("created")), params)
    listed["data"] = [public(i) for i in listed["data"]]
    return listed
