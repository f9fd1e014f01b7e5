"""PaymentIntents and their charges: a payment attempt on a test card, declines, 3-D Secure."""

from __future__ import annotations

import hashlib
import secrets

from emulator.disputes.disputes import DisputesMixin
from emulator.payments import test_cards
from emulator.state import Json, new_id, public_copy
from emulator.wire.protocol import StripeApiError, to_bool, to_int


class PaymentIntentsMixin(DisputesMixin):
    # --- payments -------------------------------------------------------------------------
    def _new_payment_intent(self, customer_id: str | None, amount: int, currency: str, created: int,
                            description: str | None = None) -> Json:
        intent = {
            "id": new_id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "capture_method": "automatic",
            "client_secret": f"pi_secret_{secrets.token_hex(8)}",
            "confirmation_method": "automatic",
            "created": created,
            "currency": currency,
            "customer": customer_id,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": {},
            "next_action": None,
            "payment_method": None,
            "payment_method_types": ["card"],
            "status": "requires_payment_method",
            "_authenticated": False,
        }
        return self.put("payment_intent", intent)

    def attempt_payment(self, intent: Json, pm: Json | None, now: int) -> str:
        """Try to collect `intent` with `pm`: returns succeeded | failed | requires_action."""
        if pm is None:
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {"code": "payment_method_missing", "message": "No payment method."}
            return "failed"
        intent["payment_method"] = pm["id"]
        card = self.test_card_of(pm)
        behaviour = pm.get("_behaviour", "ok")
        decline = card.decline or test_cards.GENERIC
        if self.misbehave.get("dunning_never_recovers") and intent.get("_dunning"):
            behaviour, decline = "fail_later", test_cards.GENERIC
        needs_auth = behaviour in ("sca", "sca_then_decline") or (behaviour == "sca_on_setup"
                                                                   and not pm.get("_set_up"))
        if needs_auth and not intent.get("_authenticated"):
            intent["status"] = "requires_action"
            intent["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
            self.emit("payment_intent.requires_action", intent, created=now)
            return "requires_action"
        declined = behaviour in ("fail_later", "declined", "sca_then_decline", "blocked")
        charge = self._new_charge(intent, pm, now, succeeded=not declined,
                                  decline=decline if declined else None, blocked=behaviour == "blocked")
        if charge["status"] == "failed":
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "type": "card_error", "code": decline.code, "decline_code": decline.decline_code,
                "message": decline.message, "charge": charge["id"], "payment_method": public_copy(pm),
                "doc_url": f"https://docs.stripe.com/error-codes/{decline.code.replace('_', '-')}",
            }
            intent["_dunning"] = True
            self.emit("charge.failed", charge, created=now)
            self.emit("payment_intent.payment_failed", intent, created=now)
            return "failed"
        if intent.get("_authenticated"):
            pm["_set_up"] = True  # an authenticated payment sets the card up for later off-session use
        if not charge["captured"]:  # capture_method=manual: the funds are held until captured
            intent.update(status="requires_capture", amount_capturable=intent["amount"], next_action=None,
                          last_payment_error=None)
            self.emit("charge.succeeded", charge, created=now)
            self.emit("payment_intent.amount_capturable_updated", intent, created=now)
            return "requires_capture"
        intent["status"] = "succeeded"
        intent["amount_received"] = intent["amount"]
        intent["next_action"] = None
        intent["last_payment_error"] = None
        self.emit("charge.succeeded", charge, created=now)
        self.emit("payment_intent.succeeded", intent, created=now)
        if behaviour == "dispute":
            for _ in range(card.disputes):
                self.create_dispute_for(charge, now, reason=card.dispute_reason)
        if behaviour == "inquiry":
            self.create_dispute_for(charge, now, inquiry=True)
        if behaviour == "ce3":
            self.create_dispute_for(charge, now, ce3=True)
        if behaviour == "efw":
            self.create_efw_for(charge, now)
        return "succeeded"

    def _new_charge(self, intent: Json, pm: Json, now: int, *, succeeded: bool,
                    decline: test_cards.Decline | None = None, blocked: bool = False) -> Json:
        card = pm["card"]
        test_card = self.test_card_of(pm)
        three_d = {"result": "authenticated", "version": "2.2.0"} if intent.get("_authenticated") else None
        risk_score = {"elevated": 78, "highest": 95}.get(test_card.risk_level,
                                                         int(hashlib.sha256(intent["id"].encode()).hexdigest()[:2], 16)
                                                         % 60)
        decline = decline or test_cards.GENERIC
        if succeeded:
            outcome = {"network_status": "approved_by_network", "reason": None, "seller_message": "Payment complete.",
                       "type": "authorized"}
        elif blocked:
            outcome = {"network_status": "not_sent_to_network", "reason": "highest_risk_level",
                       "seller_message": "Stripe blocked this payment as too risky.", "type": "blocked"}
        else:
            outcome = {"network_status": "declined_by_network", "reason": decline.decline_code,
                       "seller_message": "The bank did not return any further details with this decline.",
                       "type": "issuer_declined"}
        captured = succeeded and intent.get("capture_method") != "manual"  # manual: authorized, captured later
        charge = {
            "id": new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if captured else 0,
            "amount_refunded": 0,
            "balance_transaction": new_id("txn") if captured else None,
            "billing_details": pm.get("billing_details"),
            "captured": captured,
            "created": now,
            "currency": intent["currency"],
            "customer": intent.get("customer"),
            "description": intent.get("description"),
            "disputed": False,
            "failure_code": None if succeeded else decline.code,
            "failure_message": None if succeeded else decline.message,
            "fraud_details": {},
            "livemode": False,
            "metadata": {},
            "outcome": {**outcome, "risk_level": test_card.risk_level if test_card.risk_level != "normal" else
                        ("elevated" if risk_score >= 65 else "normal"), "risk_score": risk_score},
            "paid": succeeded,
            "payment_intent": intent["id"],
            "payment_method": pm["id"],
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": card["brand"],
                    "country": card["country"],
                    "exp_month": card["exp_month"],
                    "exp_year": card["exp_year"],
                    "fingerprint": card["fingerprint"],
                    "funding": card["funding"],
                    "last4": card["last4"],
                    "network": card["brand"],
                    "three_d_secure": three_d,
                    "checks": dict(card.get("checks") or {"cvc_check": "pass", "address_postal_code_check": None,
                                                          "address_line1_check": None}),
                },
            },
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "url": "/v1/refunds"},
            "status": "succeeded" if succeeded else "failed",
        }
        intent["latest_charge"] = charge["id"]
        return self.put("charge", charge)

    def create_payment_intent(self, params: Json) -> Json:
        amount = to_int(params.get("amount"), "amount", minimum=50)
        customer_id = params.get("customer")
        if customer_id:
            self.get("customer", customer_id, "customer", "customer")
        now = self.now_for(customer_id)
        intent = self._new_payment_intent(customer_id, amount, str(params.get("currency", "usd")).lower(), now,
                                          params.get("description"))
        self._merge_metadata(intent, params.get("metadata") or {})
        pm_id = params.get("payment_method")
        if pm_id:
            intent["payment_method"] = self._resolve_pm(pm_id, customer_id)["id"] if test_cards.is_test_card(pm_id) \
                else self.get("payment_method", pm_id, "PaymentMethod")["id"]
            intent["status"] = "requires_confirmation"
        self.emit("payment_intent.created", intent, created=now)
        if to_bool(params.get("confirm", False), "confirm"):
            self.confirm_payment_intent(intent["id"], {})
        return intent

    def confirm_payment_intent(self, intent_id: str, params: Json) -> Json:
        intent = self.get("payment_intent", intent_id, "payment_intent")
        if intent["status"] == "succeeded":
            raise StripeApiError(
                400, "This PaymentIntent's payment has already succeeded.", code="payment_intent_unexpected_state"
            )
        now = self.now_for(intent.get("customer"))
        pm_id = params.get("payment_method") or intent.get("payment_method")
        pm = self._resolve_pm(pm_id, intent.get("customer")) if pm_id else None
        if pm is not None and pm.get("_behaviour") not in ("sca", "sca_on_setup", "sca_then_decline"):
            intent["_authenticated"] = False
        outcome = self.attempt_payment(intent, pm, now)
        self._after_intent_outcome(intent, outcome, now)
        if outcome == "failed" and pm is not None:
            raise self.card_error(intent, pm)
        return intent

    def authenticate_payment_intent(self, intent_id: str) -> Json:
        """What the customer's 3-D Secure challenge does in a browser (emulator helper)."""
        intent = self.get("payment_intent", intent_id, "payment_intent")
        if self.misbehave.get("sca_never_completes"):
            return intent
        if intent["status"] != "requires_action":
            raise StripeApiError(400, "This PaymentIntent does not require action.",
                                 code="payment_intent_unexpected_state")
        intent["_authenticated"] = True
        now = self.now_for(intent.get("customer"))
        pm = self.objects["payment_method"].get(intent["payment_method"])
        outcome = self.attempt_payment(intent, pm, now)
        self._after_intent_outcome(intent, outcome, now)
        return intent

    def update_charge(self, charge_id: str, params: Json) -> Json:
        """POST /v1/charges/{id}: metadata, description and shipping; emits charge.updated."""
        charge = self.get("charge", charge_id, "charge")
        previous: Json = {"metadata": dict(charge.get("metadata") or {})} if "metadata" in params else {}
        if "metadata" in params:
            self._merge_metadata(charge, params["metadata"])
        for name in ("description", "shipping"):
            if name in params:
                previous[name] = charge.get(name)
                charge[name] = params[name] or None
        self.emit("charge.updated", charge, created=self.now_for(charge.get("customer")), previous=previous)
        return charge

    def _after_intent_outcome(self, intent: Json, outcome: str, now: int) -> None:
        """What else an intent's outcome settles; billing settles the invoice it collects (InvoicesMixin)."""
