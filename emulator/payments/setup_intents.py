"""Setup intents (/v1/setup_intents) and a customer's payment methods (/v1/customers/{id}/payment_methods).

Behaviour follows Stripe's API reference and testing docs:
- a SetupIntent starts `requires_payment_method`, or `requires_confirmation` when created with a
  `payment_method`; `confirm=true` confirms it at once; `usage` defaults to `off_session`;
- confirming with a card that needs authentication on setup (`pm_card_authenticationRequiredOnSetup`,
  4000002500003155, and the always-authenticate cards) leaves it `requires_action` with a
  `use_stripe_sdk` next action; the customer's 3-D Secure step (done in a browser at Stripe; here
  POST /_emulator/setup_intents/{id}/authenticate) completes it. A set-up 4000002500003155 card is then
  paid off-session without further authentication;
- a declined card answers 402 `card_error` carrying `error.setup_intent`, the intent back at
  `requires_payment_method` with `last_setup_error`;
- success attaches the payment method to the intent's customer; status `succeeded`;
- cancel only from requires_payment_method / requires_confirmation / requires_action, with an
  optional `cancellation_reason` (abandoned, requested_by_customer, duplicate);
- events: setup_intent.created, .requires_action, .succeeded, .setup_failed, .canceled.
"""

from __future__ import annotations

import secrets

from emulator.engine import Engine
from emulator.payments.intent_actions import check_cancelable
from emulator.state import Json, new_id, public_copy
from emulator.wire.protocol import StripeApiError, check_params, list_object, one_of, to_bool
from emulator.wire.routes import LIST_PARAMS, created_filter, render, route

KIND = "setup_intent"
CANCELABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELLATION_REASONS = ("abandoned", "requested_by_customer", "duplicate")
NEEDS_AUTH_ON_SETUP = ("sca", "sca_on_setup", "sca_then_decline")
DECLINES_ON_SETUP = ("declined", "blocked")
CREATE = {"customer", "payment_method", "allowed_payment_method_types", "confirm", "usage", "description", "metadata",
          "return_url", "automatic_payment_methods", "attach_to_self", "flow_directions", "on_behalf_of",
          "mandate_data", "payment_method_options", "payment_method_data", "single_use", "use_stripe_sdk",
          "excluded_payment_method_types", "confirmation_token", "payment_method_configuration",
          "customer_account"}
UPDATE = {"customer", "payment_method", "allowed_payment_method_types", "description", "metadata", "attach_to_self",
          "flow_directions", "payment_method_options", "payment_method_data", "excluded_payment_method_types",
          "payment_method_configuration", "customer_account"}
CONFIRM = {"payment_method", "return_url", "mandate_data", "payment_method_options", "payment_method_data",
           "use_stripe_sdk", "confirmation_token"}


def _get(engine: Engine, setup_intent_id: str) -> Json:
    return engine.get(KIND, setup_intent_id, "setup_intent", "intent")


def _payment_method(engine: Engine, intent: Json, pm_id: str) -> Json:
    # A test token makes a new PaymentMethod; attaching waits for the setup to succeed.
    return engine._resolve_pm(pm_id, None)


@route("POST", "/v1/setup_intents")
def setup_intents_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, CREATE)
    customer_id = params.get("customer")
    if customer_id:
        engine.get("customer", str(customer_id), "customer", "customer")
    usage = str(params.get("usage") or "off_session")
    if usage not in ("off_session", "on_session"):
        raise StripeApiError(400, "Invalid usage: must be one of off_session or on_session",
                             code="parameter_invalid_string", param="usage")
    now = engine.now_for(customer_id)
    intent_id = new_id("seti")
    intent: Json = {
        "id": intent_id,
        "object": KIND,
        "cancellation_reason": None,
        "client_secret": f"{intent_id}_secret_{secrets.token_hex(12)}",
        "created": now,
        "customer": customer_id,
        "description": params.get("description"),
        "flow_directions": params.get("flow_directions"),
        "last_setup_error": None,
        "latest_attempt": None,
        "livemode": False,
        "mandate": None,
        "metadata": dict(params.get("metadata") or {}),
        "next_action": None,
        "on_behalf_of": params.get("on_behalf_of"),
        "payment_method": None,
        "allowed_payment_method_types": list(params["allowed_payment_method_types"])
        if params.get("allowed_payment_method_types") else None,
        "payment_method_types": list(params.get("allowed_payment_method_types") or ["card"]),
        "single_use_mandate": None,
        "status": "requires_payment_method",
        "usage": usage,
    }
    if params.get("payment_method"):
        intent["payment_method"] = _payment_method(engine, intent, str(params["payment_method"]))["id"]
        intent["status"] = "requires_confirmation"
    engine.put(KIND, intent)
    engine.emit("setup_intent.created", intent, created=now)
    if "confirm" in params and to_bool(params["confirm"], "confirm"):
        _confirm(engine, intent, {})
    return render(engine, intent, params)


@route("GET", "/v1/setup_intents/{id}")
def setup_intents_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, _get(engine, m["id"]), params)


@route("POST", "/v1/setup_intents/{id}")
def setup_intents_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, UPDATE | {"expand"})
    intent = _get(engine, m["id"])
    if intent["status"] in ("succeeded", "canceled", "processing"):
        raise _unexpected(intent, "update")
    before = engine.snapshot(intent)
    if params.get("customer"):
        engine.get("customer", str(params["customer"]), "customer", "customer")
        intent["customer"] = str(params["customer"])
    for field in ("description", "flow_directions"):
        if field in params:
            intent[field] = params[field] or None
    if params.get("allowed_payment_method_types"):
        intent["allowed_payment_method_types"] = list(params["allowed_payment_method_types"])
        intent["payment_method_types"] = list(params["allowed_payment_method_types"])
    if "metadata" in params:
        engine._merge_metadata(intent, params["metadata"])
    if params.get("payment_method"):
        intent["payment_method"] = _payment_method(engine, intent, str(params["payment_method"]))["id"]
        intent["status"] = "requires_confirmation"
    engine.emit_update("setup_intent.updated", intent, before, created=engine.now_for(intent.get("customer")))
    return render(engine, intent, params)


@route("POST", "/v1/setup_intents/{id}/confirm")
def setup_intents_confirm(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, CONFIRM | {"expand"})
    intent = _get(engine, m["id"])
    if intent["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise _unexpected(intent, "confirm")
    _confirm(engine, intent, params)
    return render(engine, intent, params)


def _confirm(engine: Engine, intent: Json, params: Json) -> None:
    now = engine.now_for(intent.get("customer"))
    if params.get("payment_method"):
        intent["payment_method"] = _payment_method(engine, intent, str(params["payment_method"]))["id"]
    if not intent.get("payment_method"):
        raise StripeApiError(400, "You cannot confirm this SetupIntent because it's missing a payment method. "
                                  "Update the SetupIntent with a payment method and then confirm it again.",
                             code="setup_intent_unexpected_state", param="payment_method")
    pm = engine.get("payment_method", str(intent["payment_method"]), "PaymentMethod", "payment_method")
    behaviour = str(pm.get("_behaviour") or "ok")
    if behaviour in DECLINES_ON_SETUP:
        decline = engine.test_card_of(pm).decline
        error = {"type": "card_error", "code": decline.code if decline else "card_declined",
                 "decline_code": decline.decline_code if decline else "generic_decline",
                 "message": decline.message if decline else "Your card was declined.",
                 "payment_method": public_copy(pm)}
        intent.update(status="requires_payment_method", last_setup_error=error, next_action=None)
        engine.emit("setup_intent.setup_failed", intent, created=now)
        card_error = engine.card_error(None, pm)
        card_error.body["setup_intent"] = public_copy(intent)
        raise card_error
    if behaviour in NEEDS_AUTH_ON_SETUP and not intent.get("_authenticated"):
        intent.update(status="requires_action", last_setup_error=None,
                      next_action={"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}})
        engine.emit("setup_intent.requires_action", intent, created=now)
        return
    _succeed(engine, intent, pm, now)


def _succeed(engine: Engine, intent: Json, pm: Json, now: int) -> None:
    pm["_set_up"] = True  # later off-session payments with this card need no authentication
    customer_id = intent.get("customer")
    if customer_id and pm.get("customer") != customer_id:
        engine._attach(pm, str(customer_id))
    intent.update(status="succeeded", last_setup_error=None, next_action=None)
    engine.emit("setup_intent.succeeded", intent, created=now)


def authenticate(engine: Engine, setup_intent_id: str) -> Json:
    """What the customer's 3-D Secure challenge does in a browser (emulator helper)."""
    intent = _get(engine, setup_intent_id)
    if engine.misbehave.get("sca_never_completes"):
        return intent
    if intent["status"] != "requires_action":
        raise StripeApiError(400, "This SetupIntent does not require action.", code="setup_intent_unexpected_state")
    intent["_authenticated"] = True
    pm = engine.get("payment_method", str(intent["payment_method"]), "PaymentMethod")
    _succeed(engine, intent, pm, engine.now_for(intent.get("customer")))
    return intent


@route("POST", "/v1/setup_intents/{id}/cancel")
def setup_intents_cancel(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"cancellation_reason", "expand"})
    intent = _get(engine, m["id"])
    reason = params.get("cancellation_reason")
    if reason:
        one_of(reason, CANCELLATION_REASONS, "cancellation_reason")
    check_cancelable(intent, "SetupIntent", CANCELABLE)
    intent.update(status="canceled", cancellation_reason=reason or None, next_action=None)
    engine.emit("setup_intent.canceled", intent, created=engine.now_for(intent.get("customer")))
    return render(engine, intent, params)


@route("GET", "/v1/setup_intents")
def setup_intents_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS | {"customer", "payment_method", "attach_to_self", "expand",
                                        "customer_account"})
    customer, pm = params.get("customer"), params.get("payment_method")
    items = [i for i in engine.all(KIND)
             if (not customer or i.get("customer") == customer) and (not pm or i.get("payment_method") == pm)]
    items = created_filter(items, params.get("created"))
    return render(engine, list_object("/v1/setup_intents", items, params), params, is_list=True)


def _unexpected(intent: Json, action: str) -> StripeApiError:
    return StripeApiError(
        400, f"You cannot {action} this SetupIntent because it has a status of {intent['status']}.",
        code="setup_intent_unexpected_state")


# --- a customer's payment methods -------------------------------------------------------------
@route("GET", "/v1/customers/{id}/payment_methods")
def customer_payment_methods_list(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"limit", "starting_after", "ending_before", "type", "allow_redisplay", "expand"})
    engine.get("customer", m["id"], "customer")
    kind = params.get("type")
    items = [pm for pm in engine.all("payment_method")
             if pm.get("customer") == m["id"] and (not kind or pm.get("type") == kind)]
    return render(engine, list_object(f"/v1/customers/{m['id']}/payment_methods", items, params), params,
                  is_list=True)


@route("GET", "/v1/customers/{id}/payment_methods/(?P<payment_method>[^/]+)")
def customer_payment_methods_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"expand"})
    engine.get("customer", m["id"], "customer")
    pm = engine.get("payment_method", m["payment_method"], "PaymentMethod", "payment_method")
    if pm.get("customer") != m["id"]:
        raise StripeApiError(404, f"No such PaymentMethod: '{m['payment_method']}'", code="resource_missing",
                             param="payment_method")
    return render(engine, pm, params)


__all__ = ["authenticate"]
