"""PaymentIntent update, cancel and capture (`capture_method=manual`); refund update and cancel.

Behaviour follows Stripe's API reference:
- create accepts `capture_method` (`automatic`, `automatic_async`, `manual`); a confirmed manual
  intent is `requires_capture` with `amount_capturable` = amount, its charge `succeeded` but not
  captured (no balance transaction yet); events charge.succeeded and
  payment_intent.amount_capturable_updated;
- capture: only from `requires_capture`; `amount_to_capture` defaults to the whole amount, at most
  `amount_capturable`; a partial capture releases the rest, which shows as the charge's
  `amount_refunded` (Charges API: "any additional amount will be automatically refunded"); the
  charge is captured and gets its balance transaction; events charge.captured, payment_intent.succeeded;
- cancel: from requires_payment_method, requires_capture, requires_confirmation, requires_action,
  processing; `cancellation_reason` one of duplicate, fraudulent, requested_by_customer, abandoned;
  an uncaptured charge's hold is released (refunded in full); event payment_intent.canceled;
- update: metadata and description at any time; amount, currency, payment_method, capture_method
  only while requires_payment_method / requires_confirmation / requires_action (a new payment
  method puts it back to requires_confirmation);
- refunds: update takes only `metadata`; cancel only a refund in `requires_action` (card refunds never
  are: it is for payment methods needing customer action), which becomes `canceled` with
  failure_reason `merchant_request`.
"""

from __future__ import annotations

from emulator.engine import Engine
from emulator.state import Json
from emulator.wire.protocol import StripeApiError, check_params, one_of, to_bool, to_int
from emulator.wire.routes import render, route

CAPTURE_METHODS = ("automatic", "automatic_async", "manual")
CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action",
              "processing")
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
AMOUNT_UPDATABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CREATE = {"amount", "currency", "customer", "payment_method", "confirm", "description", "metadata", "off_session",
          "automatic_payment_methods", "capture_method"}
UPDATE = {"amount", "currency", "customer", "description", "metadata", "payment_method", "capture_method",
          "receipt_email", "statement_descriptor", "statement_descriptor_suffix"}


def _intent(engine: Engine, intent_id: str) -> Json:
    return engine.get("payment_intent", intent_id, "payment_intent", "intent")


def check_cancelable(intent: Json, name: str, cancelable: tuple[str, ...]) -> None:
    """Stripe's refusal to cancel a PaymentIntent or SetupIntent past the states it can be canceled in."""
    if intent["status"] not in cancelable:
        raise StripeApiError(
            400, f"You cannot cancel this {name} because it has a status of {intent['status']}. Only a "
                 f"{name} with one of the following statuses may be canceled: {', '.join(cancelable)}.",
            code=f"{intent['object']}_unexpected_state")


def _capture_method(params: Json) -> str:
    method = str(params.get("capture_method") or "automatic")
    one_of(method, CAPTURE_METHODS, "capture_method")
    return method


def payment_intents_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, CREATE, ("amount", "currency"))
    method = _capture_method(params)
    confirm = "confirm" in params and to_bool(params["confirm"], "confirm")
    rest = {k: v for k, v in params.items() if k not in ("capture_method", "confirm")}
    intent = engine.create_payment_intent(rest)
    intent["capture_method"] = method
    if confirm:
        engine.confirm_payment_intent(intent["id"], {})
    return render(engine, intent, params)


@route("POST", "/v1/payment_intents/{id}/capture")
def payment_intents_capture(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"amount_to_capture", "metadata", "final_capture", "statement_descriptor",
                          "statement_descriptor_suffix", "application_fee_amount", "transfer_data"})
    intent = _intent(engine, m["id"])
    if intent["status"] != "requires_capture":
        raise StripeApiError(
            400, f"This PaymentIntent could not be captured because it has a status of {intent['status']}. Only a "
                 "PaymentIntent with one of the following statuses may be captured: requires_capture.",
            code="payment_intent_unexpected_state")
    capturable = int(intent.get("amount_capturable") or intent["amount"])
    amount = to_int(params.get("amount_to_capture", capturable), "amount_to_capture", minimum=1)
    if amount > capturable:
        raise StripeApiError(400, f"The amount_to_capture ({amount}) is greater than the amount capturable "
                                  f"({capturable}).", code="amount_too_large", param="amount_to_capture")
    now = engine.now_for(intent.get("customer"))
    charge = engine.get("charge", str(intent["latest_charge"]), "charge")
    before = engine.snapshot(charge)
    if "metadata" in params:
        engine._merge_metadata(intent, params["metadata"])
    charge.update(captured=True, amount_captured=amount, amount_refunded=charge["amount"] - amount,
                  balance_transaction=f"txn_{charge['id'].removeprefix('ch_')}")
    engine.put("charge", charge)  # makes its balance transaction (emulator/payments/balance.py)
    intent.update(status="succeeded", amount_capturable=0, amount_received=amount)
    engine.emit_update("charge.captured", charge, before, created=now, always=True)
    engine.emit("payment_intent.succeeded", intent, created=now)
    return render(engine, intent, params)


@route("POST", "/v1/payment_intents/{id}/cancel")
def payment_intents_cancel(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"cancellation_reason"})
    intent = _intent(engine, m["id"])
    reason = params.get("cancellation_reason")
    if reason:
        one_of(reason, CANCELLATION_REASONS, "cancellation_reason")
    check_cancelable(intent, "PaymentIntent", CANCELABLE)
    now = engine.now_for(intent.get("customer"))
    if intent["status"] == "requires_capture" and intent.get("latest_charge"):
        charge = engine.get("charge", str(intent["latest_charge"]), "charge")
        before = engine.snapshot(charge)
        charge.update(amount_refunded=charge["amount"], refunded=True)  # the hold is released
        engine.emit_update("charge.refunded", charge, before, created=now, always=True)
    intent.update(status="canceled", canceled_at=now, cancellation_reason=reason or None, amount_capturable=0,
                  next_action=None)
    engine.emit("payment_intent.canceled", intent, created=now)
    return render(engine, intent, params)


def payment_intents_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, UPDATE)
    intent = _intent(engine, m["id"])
    changes_payment = {"amount", "currency", "payment_method", "capture_method"} & set(params)
    if changes_payment and intent["status"] not in AMOUNT_UPDATABLE:
        field = sorted(changes_payment)[0]
        raise StripeApiError(
            400, f"This PaymentIntent's {field} could not be updated because it has a status of {intent['status']}. "
                 f"You may only update the {field} of a PaymentIntent with one of the following statuses: "
                 f"{', '.join(AMOUNT_UPDATABLE)}.", code="payment_intent_unexpected_state", param=field)
    before = engine.snapshot(intent)
    if "amount" in params:
        intent["amount"] = to_int(params["amount"], "amount", minimum=50)
    if params.get("currency"):
        intent["currency"] = str(params["currency"]).lower()
    if "capture_method" in params:
        intent["capture_method"] = _capture_method(params)
    if params.get("customer"):
        engine.get("customer", str(params["customer"]), "customer", "customer")
        intent["customer"] = str(params["customer"])
    if "description" in params:
        intent["description"] = params["description"] or None
    for field in ("receipt_email", "statement_descriptor", "statement_descriptor_suffix"):
        if field in params:
            intent[field] = params[field] or None
    if "metadata" in params:
        engine._merge_metadata(intent, params["metadata"])
    if params.get("payment_method"):
        intent["payment_method"] = engine._resolve_pm(str(params["payment_method"]), intent.get("customer"))["id"]
        intent["status"] = "requires_confirmation"
    engine.emit_update("payment_intent.updated", intent, before, created=engine.now_for(intent.get("customer")))
    return render(engine, intent, params)


def refunds_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"metadata"})
    refund = engine.get("refund", m["id"], "refund")
    before = engine.snapshot(refund)
    if "metadata" in params:
        engine._merge_metadata(refund, params["metadata"])
    now = engine.now_for(None)
    if engine.emit_update("refund.updated", refund, before, created=now) is not None:
        engine.emit_update("charge.refund.updated", refund, before, created=now)
    return render(engine, refund, params)


@route("POST", "/v1/refunds/{id}/cancel")
def refunds_cancel(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, set())
    refund = engine.get("refund", m["id"], "refund")
    if refund["status"] != "requires_action":
        raise StripeApiError(400, f"You can't cancel this refund because it has a status of {refund['status']}. "
                                  "Only a refund with a status of requires_action can be canceled.")
    before = engine.snapshot(refund)
    refund.update(status="canceled", failure_reason="merchant_request")
    charge = engine.objects.get("charge", {}).get(str(refund["charge"]))
    if charge is not None:
        charge["amount_refunded"] = max(0, charge["amount_refunded"] - refund["amount"])
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    engine.emit_update("refund.updated", refund, before, created=engine.now_for(None))
    return render(engine, refund, params)


route("POST", "/v1/payment_intents")(payment_intents_create)
route("POST", "/v1/payment_intents/{id}")(payment_intents_update)
route("POST", "/v1/refunds/{id}")(refunds_update)

__all__ = ["payment_intents_cancel", "payment_intents_capture", "refunds_cancel"]
