"""Refunds and the balance transactions money movements leave."""

from __future__ import annotations

from emulator.disputes.efws import EarlyFraudWarningsMixin
from emulator.payments import refund_outcomes
from emulator.state import Json, new_id
from emulator.wire.protocol import StripeApiError, to_int


class RefundsMixin(EarlyFraudWarningsMixin):
    # --- refunds ----------------------------------------------------------------------
    def create_refund(self, params: Json) -> Json:
        charge_id = params.get("charge")
        if not charge_id and params.get("payment_intent"):
            intent = self.get("payment_intent", params["payment_intent"], "payment_intent", "payment_intent")
            charge_id = intent.get("latest_charge")
        if not charge_id:
            raise StripeApiError(400, "One of the following params should be provided for this request: "
                                      "payment_intent or charge.", code="parameter_missing", param="charge")
        charge = self.get("charge", charge_id, "charge", "charge")
        if charge["disputed"]:
            raise StripeApiError(400, f"Charge {charge_id} has been charged back; cannot issue a refund.",
                                 code="charge_disputed", param="charge")
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            raise StripeApiError(400, f"Charge {charge_id} has already been refunded.",
                                 code="charge_already_refunded", param="charge")
        amount = to_int(params.get("amount", remaining), "amount", minimum=1)
        if amount > remaining:
            raise StripeApiError(
                400, f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                code="amount_too_large", param="amount",
            )
        reason = params.get("reason")
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise StripeApiError(400, "Invalid reason", code="parameter_invalid_string", param="reason")
        now = self.now_for(charge.get("customer"))
        refund = {
            "id": new_id("re"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": new_id("txn"),
            "charge": charge_id,
            "created": now,
            "currency": charge["currency"],
            "metadata": dict(params.get("metadata") or {}),
            "payment_intent": charge.get("payment_intent"),
            "reason": reason,
            "status": "succeeded",
            "failure_reason": None,
            "pending_reason": None,
        }
        settle_later = refund_outcomes.prepare(self, refund, charge)
        self.put("refund", refund)
        before = self.snapshot(charge)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        charge["refunds"]["data"].insert(0, refund)
        self.emit("refund.created", refund, created=now)
        self.emit_update("charge.refunded", charge, before, created=now, always=True)
        if charge["refunded"]:
            self._efw_no_longer_actionable(charge_id, now)
        settle_later()
        return refund

    def _balance_transaction(self, amount: int, currency: str, now: int, source: str, description: str, *,
                             fee: int = 0) -> Json:
        """A dispute's funds movement: an `adjustment` in reporting category `dispute` (or its reversal),
        with Stripe's dispute fee as a `stripe_fee` line on the withdrawal."""
        fee_details = [{"amount": fee, "application": None, "currency": currency, "description": "Dispute fee",
                        "type": "stripe_fee"}] if fee else []
        txn = {
            "id": new_id("txn"), "object": "balance_transaction", "amount": amount, "available_on": now,
            "balance_type": "payments", "created": now, "currency": currency, "description": description,
            "exchange_rate": None, "fee": fee, "fee_details": fee_details, "net": amount - fee,
            "reporting_category": "dispute" if amount < 0 else "dispute_reversal", "source": source,
            "status": "available", "type": "adjustment",
        }
        return self.put("balance_transaction", txn)
