"""Checkout Session expiry: POST /v1/checkout/sessions/{id}/expire.

Stripe's API reference: a Checkout Session can be expired while its status is `open`; after
that a customer can no longer complete it. Expiring anything else returns an error. The
session's status becomes `expired` and `checkout.session.expired` is emitted.
"""

from __future__ import annotations

from emulator.api import public, route
from emulator.engine import Engine
from emulator.state import Json
from emulator.wire.protocol import StripeApiError, check_params


@route("POST", "/v1/checkout/sessions/{id}/expire")
def checkout_sessions_expire(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, set())
    session = engine.get("checkout.session", m["id"], "checkout.session")
    if session["status"] != "open":
        raise StripeApiError(400, f"This Checkout Session is {session['status']}, not open, so it cannot be expired.")
    session["status"] = "expired"
    session["url"] = None  # Stripe: the URL is only present while the session is active
    engine.emit("checkout.session.expired", session, created=engine.now_for(session.get("customer")))
    return public(session)


__all__ = ["checkout_sessions_expire"]
