"""How a subscription ends: canceled now (the API, a period-end cancellation, the retry schedule's
end setting), or `incomplete_expired` when its first invoice isn't paid within 23 hours."""

from __future__ import annotations

from emulator.payments.intents import PaymentIntentsMixin
from emulator.state import Json
from emulator.wire.protocol import StripeApiError


class CancellationMixin(PaymentIntentsMixin):
    def cancel_subscription(self, subscription_id: str, *, at: int | None = None) -> Json:
        subscription = self.get("subscription", subscription_id, "subscription")
        if subscription["status"] == "canceled":
            raise StripeApiError(400, "This subscription is already canceled.")
        now = at or self.now_for(subscription["customer"])
        subscription["status"] = "canceled"
        subscription["canceled_at"] = subscription["canceled_at"] or now
        subscription["ended_at"] = now
        self.emit("customer.subscription.deleted", subscription, created=now)
        return subscription

    def _expire_incomplete(self, subscription: Json, at: int) -> None:
        """Stripe: no successful payment within 23 hours of creation -> incomplete_expired, the
        first invoice voided, and no further invoices."""
        before = self.snapshot(subscription)
        subscription["status"] = "incomplete_expired"
        subscription["ended_at"] = at
        self.emit_update("customer.subscription.updated", subscription, before, created=at)
        invoice_id = subscription.get("latest_invoice")
        invoice = self.objects.get("invoice", {}).get(invoice_id) if invoice_id else None
        if invoice is not None and invoice["status"] == "open":
            invoice["status"] = "void"
            invoice["status_transitions"]["voided_at"] = at
            invoice["next_payment_attempt"] = None
            self.emit("invoice.voided", invoice, created=at)
