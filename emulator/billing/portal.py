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

from emulator.api import public, route
from emulator.engine import Engine
from emulator.state import Json, new_id
from emulator.wire.protocol import StripeApiError, check_params

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
