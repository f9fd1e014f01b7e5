"""The /v1 routes of events and webhook endpoints."""

from __future__ import annotations

from collections.abc import Callable

from emulator.engine import Engine
from emulator.events.ordering import list_page
from emulator.state import Json, new_id
from emulator.wire.protocol import StripeApiError, check_params, list_object, to_bool
from emulator.wire.routes import LIST_PARAMS, public, render, retrieve, route

# --- events ------------------------------------------------------------------------------------------
retrieve("/v1/events/{id}", "event")


def _type_matches(event_type: str, pattern: str) -> bool:
    return event_type == pattern or (pattern.endswith("*") and event_type.startswith(pattern[:-1]))


def event_filter(params: Json) -> Callable[[Json], bool]:
    """Which events a list request asks for (`type` or `types`, with `*` wildcards, and
    `delivery_success`); refuses both type parameters at once, as Stripe does."""
    wanted_type = params.get("type")
    types = params.get("types") or []
    if wanted_type and types:
        raise StripeApiError(400, "You may only specify one of these parameters: type, types.", param="types")
    delivery = params.get("delivery_success")
    delivery_value = None if delivery in (None, "") else to_bool(delivery, "delivery_success")
    return lambda e: ((not wanted_type or _type_matches(e["type"], wanted_type))
                      and (not types or any(_type_matches(e["type"], t) for t in types))
                      and (delivery_value is None or e.get("_delivery_success") is delivery_value))


@route("GET", "/v1/events")
def events_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    wanted = event_filter(params)
    check_params(params, LIST_PARAMS | {"type", "types", "delivery_success"})
    listed = list_page(engine.event_order, engine.objects.get("event", {}), "/v1/events", params, wanted)
    return render(engine, listed, params, is_list=True)


# --- webhook endpoints ---------------------------------------------------------------------------------
@route("POST", "/v1/webhook_endpoints")
def webhook_endpoints_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"url", "enabled_events", "description", "api_version", "metadata", "connect"},
                 ("url", "enabled_events"))
    if not str(params["url"]).startswith(("http://", "https://")):
        raise StripeApiError(400, "Invalid URL: must be a valid http(s) URL.", code="url_invalid", param="url")
    endpoint = {
        "id": new_id("we"),
        "object": "webhook_endpoint",
        "api_version": params.get("api_version"),
        "application": None,
        "created": engine.now_for(None),
        "description": params.get("description"),
        "enabled_events": list(params["enabled_events"]),
        "livemode": False,
        "metadata": dict(params.get("metadata") or {}),
        "secret": "whsec_" + new_id("x")[2:] + new_id("x")[2:10],
        "status": "enabled",
        "url": params["url"],
    }
    engine.put("webhook_endpoint", endpoint)
    return public(endpoint)


def _endpoint_view(endpoint: Json) -> Json:
    # Stripe returns the signing secret only when the endpoint is created.
    return {k: v for k, v in public(endpoint).items() if k != "secret"}


@route("GET", "/v1/webhook_endpoints/{id}")
def webhook_endpoints_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return _endpoint_view(engine.get("webhook_endpoint", m["id"], "webhook_endpoint"))


@route("POST", "/v1/webhook_endpoints/{id}")
def webhook_endpoints_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"url", "enabled_events", "description", "disabled", "metadata"})
    endpoint = engine.get("webhook_endpoint", m["id"], "webhook_endpoint")
    for field in ("url", "description"):
        if field in params:
            endpoint[field] = params[field]
    if "enabled_events" in params:
        endpoint["enabled_events"] = list(params["enabled_events"])
    if "disabled" in params:
        endpoint["status"] = "disabled" if to_bool(params["disabled"], "disabled") else "enabled"
    return _endpoint_view(endpoint)


@route("DELETE", "/v1/webhook_endpoints/{id}")
def webhook_endpoints_delete(engine: Engine, m: dict[str, str], params: Json) -> Json:
    endpoint = engine.get("webhook_endpoint", m["id"], "webhook_endpoint")
    endpoint["deleted"] = True
    return {"id": m["id"], "object": "webhook_endpoint", "deleted": True}


@route("GET", "/v1/webhook_endpoints")
def webhook_endpoints_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS)
    listed = list_object("/v1/webhook_endpoints", engine.all("webhook_endpoint"), params)
    listed["data"] = [_endpoint_view(e) for e in listed["data"]]
    return listed
