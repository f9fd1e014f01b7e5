"""Payment methods: Stripe's test cards by token or number, attach, the default one."""

from __future__ import annotations

import hashlib
import time

from emulator.objects import catalogue
from emulator.objects.files import FilesMixin
from emulator.payments import test_cards
from emulator.state import Json, new_id, public_copy
from emulator.wire.protocol import StripeApiError, missing


class PaymentMethodsMixin(FilesMixin):
    def card_payment_method(self, token_or_number: str) -> Json:
        """A new PaymentMethod object for a test token (pm_card_*) or a test card number."""
        found = test_cards.lookup(token_or_number)
        if found is None:
            raise missing("PaymentMethod", token_or_number, "payment_method")
        token, test_card = found
        number, brand = test_card.number, test_card.brand
        return {
            "id": new_id("pm"),
            "object": "payment_method",
            "type": "card",
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "card": {
                "brand": brand,
                "checks": {"address_line1_check": None, "address_postal_code_check": test_card.postal_check,
                           "cvc_check": test_card.cvc_check},
                "country": test_card.country,
                "display_brand": brand,
                "exp_month": 12,
                "exp_year": 2034,
                "fingerprint": hashlib.sha256(number.encode()).hexdigest()[:16],
                "funding": test_card.funding,
                "last4": number[-4:],
                "three_d_secure_usage": {"supported": True},
                "networks": {"available": [brand], "preferred": None},
            },
            "created": int(time.time()),
            "customer": None,
            "livemode": False,
            "metadata": {},
            "_behaviour": test_card.behaviour,
            "_test_card": token,
        }

    def _resolve_pm(self, pm_id: str, customer_id: str | None) -> Json:
        if test_cards.is_test_card(pm_id):
            pm = self.card_payment_method(pm_id)
            self.put("payment_method", pm)
            if customer_id:
                self._attach(pm, customer_id)
            return pm
        return self.get("payment_method", pm_id, "PaymentMethod", "payment_method")

    def _attach(self, pm: Json, customer_id: str) -> None:
        if pm["_behaviour"] == "declined":
            raise self.card_error(None, pm)
        pm["customer"] = customer_id
        self.emit("payment_method.attached", pm, created=self.now_for(customer_id))

    def attach_payment_method(self, pm_id: str, customer_id: str) -> Json:
        self.get("customer", customer_id, "customer", "customer")
        if test_cards.is_test_card(pm_id):
            return self._resolve_pm(pm_id, customer_id)
        pm = self.get("payment_method", pm_id, "PaymentMethod")
        self._attach(pm, customer_id)
        return pm

    def create_payment_method(self, params: Json) -> Json:
        card = params.get("card") or {}
        number = card.get("number") if isinstance(card, dict) else None
        token = card.get("token") if isinstance(card, dict) else None
        if not number and not token:
            raise StripeApiError(400, "Missing required param: card.", code="parameter_missing", param="card")
        pm = self.card_payment_method(str(number or token))
        return self.put("payment_method", pm)

    def default_payment_method(self, customer_id: str, subscription: Json | None = None) -> Json | None:
        pm_id = (subscription or {}).get("default_payment_method")
        if not pm_id:
            customer = self.get("customer", customer_id, "customer")
            pm_id = customer["invoice_settings"].get("default_payment_method")
        if not pm_id:
            attached = [pm for pm in self.all("payment_method") if pm.get("customer") == customer_id]
            pm_id = attached[-1]["id"] if attached else None
        pm = self.objects.get("payment_method", {}).get(pm_id) if pm_id else None
        # A detached card is no longer the customer's: no payment method is available then.
        return pm if pm is not None and pm.get("customer") == customer_id else None

    @staticmethod
    def test_card_of(pm: Json) -> test_cards.TestCard:
        found = test_cards.lookup(str(pm.get("_test_card") or "pm_card_visa"))
        return found[1] if found else test_cards.CARDS["pm_card_visa"]

    def card_error(self, intent: Json | None, pm: Json | None) -> StripeApiError:
        """Stripe's 402 for a declined payment: the error carries the PaymentIntent, PaymentMethod and charge."""
        last = (intent or {}).get("last_payment_error") or {}
        if not last and pm is not None:  # declined when attached: the card's own decline
            decline = self.test_card_of(pm).decline or test_cards.GENERIC
            last = {"code": decline.code, "decline_code": decline.decline_code, "message": decline.message}
        extra: Json = {}
        if intent is not None:
            extra["payment_intent"] = catalogue.conform(public_copy(intent))
            if intent.get("latest_charge"):
                extra["charge"] = intent["latest_charge"]
        if pm is not None:
            extra["payment_method"] = catalogue.conform(public_copy(pm))
        return StripeApiError(
            402, str(last.get("message") or "Your card was declined."), type_="card_error",
            code=str(last.get("code") or "card_declined"),
            decline_code=str(last.get("decline_code") or "generic_decline"), extra=extra,
        )
