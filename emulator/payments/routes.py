"""The /v1 routes of payment methods, payment intents, charges and refunds (capture, cancel and
update are in payments/intent_actions.py)."""

from __future__ import annotations

from emulator.engine import Engine
from emulator.state import Json
from emulator.wire.protocol import check_params
from emulator.wire.routes import call, create, list_by, list_kind, render, retrieve, route

# --- payment methods -------------------------------------------------------------------------
create("/v1/payment_methods", Engine.create_payment_method, {"type", "card", "billing_details", "metadata"}, ("type",))


retrieve("/v1/payment_methods/{id}", "payment_method", "PaymentMethod")


@route("POST", "/v1/payment_methods/{id}/attach")
def payment_methods_attach(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"customer"}, ("customer",))
    return render(engine, engine.attach_payment_method(m["id"], params["customer"]), params)


@route("POST", "/v1/payment_methods/{id}/detach")
def payment_methods_detach(engine: Engine, m: dict[str, str], params: Json) -> Json:
    pm = engine.get("payment_method", m["id"], "PaymentMethod")
    pm["customer"] = None
    return render(engine, pm, params)


list_by("payment_method", "/v1/payment_methods", ("customer",), frozenset({"type"}))

# --- payment intents and charges (create: payments/intent_actions.py) ------------------------------
retrieve("/v1/payment_intents/{id}", "payment_intent")


call("POST", "/v1/payment_intents/{id}/confirm", Engine.confirm_payment_intent,
     {"payment_method", "return_url", "off_session"})


list_by("payment_intent", "/v1/payment_intents", ("customer",))

retrieve("/v1/charges/{id}", "charge")


call("POST", "/v1/charges/{id}", Engine.update_charge, {"metadata", "description", "shipping"})


list_by("charge", "/v1/charges", ("customer", "payment_intent"))

# --- refunds ----------------------------------------------------------------------------------
create("/v1/refunds", Engine.create_refund, {"charge", "payment_intent", "amount", "reason", "metadata"})


retrieve("/v1/refunds/{id}", "refund")


@route("GET", "/v1/refunds")
def refunds_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    charge = params.get("charge")
    return list_kind(engine, "refund", "/v1/refunds", params, {"charge", "payment_intent"},
                     lambda r: not charge or r["charge"] == charge)
