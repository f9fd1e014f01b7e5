"""Checkout Session expiry: POST /v1/checkout/sessions/{id}/expire.

Stripe's API reference: a Checkout Session can be expired while its status is `open`; after
that a customer can no longer complete it. Expiring anything else returns an error. The
session's status becomes `expired` and `checkout.session.expired` is emitted.
"""

from __future__ import annotations

from emulator.engine import Engine
from emulator.state import DAY, Json, new_id
from emulator.wire.protocol import StripeApiError, check_params
from emulator.wire.routes import list_kind, public, render, retrieve, route


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


# --- checkout sessions ------------------------------------------------------------------------------------
@route("POST", "/v1/checkout/sessions")
def checkout_sessions_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"mode", "line_items", "customer", "customer_email", "success_url", "cancel_url",
                          "metadata", "client_reference_id", "subscription_data", "allow_promotion_codes",
                          "automatic_tax", "payment_method_types"}, ("mode",))
    if params["mode"] not in ("payment", "setup", "subscription"):
        raise StripeApiError(400, "Invalid mode", code="parameter_invalid_string", param="mode")
    line_items = params.get("line_items") or []
    if params["mode"] == "subscription" and not line_items:
        raise StripeApiError(400, "Missing required param: line_items.", code="parameter_missing",
                             param="line_items")
    for index, line in enumerate(line_items):
        engine.get("price", str(line.get("price")), "price", f"line_items[{index}][price]")
    if params.get("customer"):
        engine.get("customer", params["customer"], "customer", "customer")
    session_id = new_id("cs_test")
    session = {
        "id": session_id,
        "object": "checkout.session",
        "client_reference_id": params.get("client_reference_id"),
        "created": engine.now_for(params.get("customer")),
        "customer": params.get("customer"),
        "customer_email": params.get("customer_email"),
        "expires_at": engine.now_for(params.get("customer")) + DAY,
        "livemode": False,
        "metadata": dict(params.get("metadata") or {}),
        "mode": params["mode"],
        "payment_status": "unpaid",
        "status": "open",
        "subscription": None,
        "success_url": params.get("success_url"),
        "cancel_url": params.get("cancel_url"),
        "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        "_line_items": line_items,
        "_subscription_data": params.get("subscription_data") or {},
    }
    return render(engine, engine.put("checkout.session", session), params)



retrieve("/v1/checkout/sessions/{id}", "checkout.session")


@route("GET", "/v1/checkout/sessions")
def checkout_sessions_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    return list_kind(engine, "checkout.session", "/v1/checkout/sessions", params, {"customer", "subscription"})


def complete_checkout(engine: Engine, session_id: str, payment_method: str) -> Json:
    """What a customer finishing Checkout does: customer, card, subscription, then the event."""
    session = engine.get("checkout.session", session_id, "checkout.session")
    if session["status"] != "open":
        raise StripeApiError(400, "This Checkout Session is no longer open.")
    customer_id = session.get("customer")
    if not customer_id:
        customer_id = engine.create_customer({"email": session.get("customer_email"),
                                              "metadata": {"user_id": session.get("client_reference_id") or ""}})["id"]
    pm = engine.attach_payment_method(payment_method, customer_id)
    engine.objects["customer"][customer_id]["invoice_settings"]["default_payment_method"] = pm["id"]
    if session["mode"] == "subscription":
        items = [{"price": line["price"], "quantity": line.get("quantity", 1)} for line in session["_line_items"]]
        metadata = dict((session["_subscription_data"] or {}).get("metadata") or {})
        subscription = engine.create_subscription({"customer": customer_id, "items": items, "metadata": metadata,
                                                   "default_payment_method": pm["id"]})
        session["subscription"] = subscription["id"]
        paid = subscription["status"] == "active"
    else:
        paid = True
    session.update(customer=customer_id, status="complete", payment_status="paid" if paid else "unpaid")
    engine.emit("checkout.session.completed", session, created=engine.now_for(customer_id))
    return public(session)
