"""Customer Portal sessions: POST /v1/billing_portal/sessions.

The object's fields are the pinned SDK's (`stripe.billing_portal.Session`'s annotations), so a
field the SDK adds shows up without a hand edit. Behaviour follows Stripe's API reference:
`customer` is required; without `configuration` the account's default configuration is used,
and when there is none the request fails (Stripe asks you to save the portal settings first);
a named configuration must exist. The session is short-lived and single-use at Stripe; the
emulator returns the URL shape Stripe documents (`https://billing.stripe.com/p/session/...`)
and keeps the session for retrieval by tests only (Stripe has no retrieve endpoint).
"""

from __future__ import annotations

import stripe

from emulator.engine import Engine
from emulator.state import Json, new_id
from emulator.wire.protocol import StripeApiError, check_params, to_bool
from emulator.wire.routes import list_kind, public, render, retrieve, route

KIND = "billing_portal.session"
FIELDS = tuple(name for name in stripe.billing_portal.Session.__annotations__ if name != "OBJECT_NAME")
NO_DEFAULT_CONFIGURATION = (
    "No configuration provided and your test mode default configuration has not been created. Provide a "
    "configuration or create your default by saving your customer portal settings in test mode at "
    "https://dashboard.stripe.com/test/settings/billing/portal."
)


def _configuration(engine: Engine, configuration_id: str | None) -> Json:
    if configuration_id:
        return engine.get("billing_portal.configuration", configuration_id, "billing_portal.configuration",
                          "configuration")
    defaults = [c for c in engine.all("billing_portal.configuration") if c.get("is_default") and c.get("active")]
    if not defaults:
        raise StripeApiError(400, NO_DEFAULT_CONFIGURATION, param="configuration")
    return defaults[0]


@route("POST", "/v1/billing_portal/sessions")
def portal_sessions_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"customer", "configuration", "return_url", "locale", "on_behalf_of", "flow_data",
                          "customer_account"}, ("customer",))
    customer_id = str(params["customer"])
    engine.get("customer", customer_id, "customer", "customer")
    configuration = _configuration(engine, params.get("configuration"))
    session_id = new_id("bps")
    values: Json = {
        "id": session_id,
        "object": KIND,
        "configuration": configuration["id"],
        "created": engine.now_for(customer_id),
        "customer": customer_id,
        "livemode": False,
        "locale": params.get("locale"),
        "on_behalf_of": params.get("on_behalf_of"),
        "return_url": params.get("return_url") or configuration.get("default_return_url"),
        "url": f"https://billing.stripe.com/p/session/test_{session_id.removeprefix('bps_')}",
    }
    session = {name: values.get(name) for name in FIELDS}
    return public(engine.put(KIND, session))


__all__ = ["FIELDS", "portal_sessions_create"]


# --- billing portal configurations ---------------------------------------------------------------------
@route("POST", "/v1/billing_portal/configurations")
def portal_configurations_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"features", "business_profile", "default_return_url", "metadata", "name"}, ("features",))
    return render(engine, engine.put("billing_portal.configuration", portal_configuration(engine, params)), params)


def portal_configuration(engine: Engine, params: Json) -> Json:
    features = params.get("features") or {}

    def enabled(name: str) -> bool:
        return to_bool((features.get(name) or {}).get("enabled", False), f"features[{name}][enabled]")

    update = features.get("subscription_update") or {}
    cancel = features.get("subscription_cancel") or {}
    return {
        "id": new_id("bpc"),
        "object": "billing_portal.configuration",
        "active": True,
        "business_profile": params.get("business_profile") or {},
        "created": engine.now_for(None),
        "default_return_url": params.get("default_return_url"),
        "features": {
            "customer_update": {"enabled": enabled("customer_update"), "allowed_updates": []},
            "invoice_history": {"enabled": enabled("invoice_history")},
            "payment_method_update": {"enabled": enabled("payment_method_update")},
            "subscription_cancel": {"enabled": enabled("subscription_cancel"),
                                    "mode": cancel.get("mode", "at_period_end"),
                                    "proration_behavior": cancel.get("proration_behavior", "none")},
            "subscription_update": {
                "enabled": enabled("subscription_update"),
                "default_allowed_updates": list(update.get("default_allowed_updates") or []),
                "proration_behavior": update.get("proration_behavior", "create_prorations"),
                "products": list(update.get("products") or []),
                "schedule_at_period_end": update.get("schedule_at_period_end") or {"conditions": []},
            },
        },
        "is_default": not engine.all("billing_portal.configuration"),
        "livemode": False,
        "metadata": dict(params.get("metadata") or {}),
        "name": params.get("name"),
        "updated": engine.now_for(None),
    }


retrieve("/v1/billing_portal/configurations/{id}", "billing_portal.configuration")


@route("POST", "/v1/billing_portal/configurations/{id}")
def portal_configurations_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"features", "business_profile", "default_return_url", "metadata", "name", "active"})
    configuration = engine.get("billing_portal.configuration", m["id"], "billing_portal.configuration")
    if "active" in params:
        configuration["active"] = to_bool(params["active"], "active")
    if "features" in params:
        configuration["features"] = portal_configuration(engine, params)["features"]
    return render(engine, configuration, params)


@route("GET", "/v1/billing_portal/configurations")
def portal_configurations_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    return list_kind(engine, "billing_portal.configuration", "/v1/billing_portal/configurations", params,
                     {"active", "is_default"})
