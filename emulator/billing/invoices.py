"""Invoices: lines, finalization, collection (attempts, retries, the end setting), paid and void."""

from __future__ import annotations

from emulator.billing import calendar as billing_calendar
from emulator.billing import retry_schedule
from emulator.billing.cancellation import CancellationMixin
from emulator.state import INVOICE_ADJUST, INVOICE_LINES_CHANGED, Json, new_id
from emulator.wire.protocol import StripeApiError, to_bool, to_int


class InvoicesMixin(CancellationMixin):
    def _item_lines(self, subscription: Json, now: int) -> list[Json]:
        lines = []
        for item in subscription["items"]["data"]:
            price = item["price"]
            lines.append(self._line(subscription, item, price, price["unit_amount"] * item["quantity"],
                                    item["current_period_start"], item["current_period_end"], proration=False,
                                    description=f"{item['quantity']} × {self._product_name(price)}"))
        return lines

    def _product_name(self, price: Json) -> str:
        product = self.objects.get("product", {}).get(price["product"])
        return str(product["name"]) if product else "Subscription"

    def _line(self, subscription: Json, item: Json, price: Json, amount: int, start: int, end: int, *,
              proration: bool, description: str) -> Json:
        return {
            "id": new_id("il"),
            "object": "line_item",
            "amount": amount,
            "currency": price["currency"],
            "description": description,
            "livemode": False,
            "metadata": {},
            "parent": {
                "type": "subscription_item_details",
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": proration,
                    "proration_details": {"credited_items": None},
                    "subscription": subscription["id"],
                    "subscription_item": item["id"],
                },
            },
            "period": {"start": start, "end": end},
            "pricing": {
                "price_details": {"price": price["id"], "product": price["product"]},
                "type": "price_details",
                "unit_amount_decimal": price["unit_amount_decimal"],
            },
            "quantity": item["quantity"],
            "discountable": True,
            "subtotal": amount,
        }

    def _invoice_for(self, subscription: Json, billing_reason: str, lines: list[Json], now: int, *,
                     finalize: bool = True, auto_advance: bool = True) -> Json:
        total = sum(line["amount"] for line in lines)
        invoice_id = new_id("in")
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "issuer": {"type": "self"},
            "amount_due": max(total, 0),
            "amount_paid": 0,
            "amount_remaining": max(total, 0),
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": auto_advance,
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": subscription["currency"],
            "customer": subscription["customer"],
            "customer_email": self.objects["customer"][subscription["customer"]].get("email"),
            "hosted_invoice_url": f"https://invoice.stripe.com/i/{invoice_id}",
            "lines": {"object": "list", "data": lines, "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines"},
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None,
            "number": f"EMU-{len(self.objects.get('invoice', {})) + 1:05d}",
            "parent": {
                "quote_details": None,
                "subscription_details": {"metadata": dict(subscription["metadata"]),
                                         "subscription": subscription["id"]},
                "type": "subscription_details",
            },
            "payments": {"object": "list", "data": [], "has_more": False},
            "period_end": now,
            "period_start": now,
            "status": "draft",
            "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                                   "voided_at": None},
            "subtotal": total,
            "total": total,
            "test_clock": subscription.get("test_clock"),
        }
        for adjust in INVOICE_ADJUST:
            adjust(self.as_engine(), invoice, subscription, now)
        self.put("invoice", invoice)
        self.invoices_by_subscription.setdefault(subscription["id"], []).append(invoice_id)
        subscription["latest_invoice"] = invoice_id
        if not finalize and auto_advance:
            # A renewal stays a draft for about an hour before Stripe finalizes it and attempts payment.
            invoice["automatically_finalizes_at"] = now + billing_calendar.RENEWAL_DRAFT_SECONDS
        self.emit("invoice.created", invoice, created=now)
        if finalize:
            self.finalize_invoice(invoice, now)
        return invoice

    def finalize_invoice(self, invoice: Json, now: int) -> None:
        if invoice["status"] != "draft":
            raise StripeApiError(400, "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                                 code="invoice_not_editable")
        invoice["status"] = "open"
        invoice["automatically_finalizes_at"] = None
        invoice["status_transitions"]["finalized_at"] = now
        self.emit("invoice.finalized", invoice, created=now)
        if invoice["amount_due"] == 0:
            self._mark_paid(invoice, now)

    def _collect(self, invoice: Json, subscription: Json | None, now: int, pm: Json | None = None) -> str:
        if invoice["status"] == "paid":
            return "succeeded"
        intent = self._intent_for(invoice, now)
        if invoice.get("_failed_once"):
            intent["_dunning"] = True
        pm = pm or self.default_payment_method(invoice["customer"], subscription)
        outcome = self.attempt_payment(intent, pm, now)
        self._settle_invoice(invoice, intent, outcome, now)
        return outcome

    def _intent_for(self, invoice: Json, now: int) -> Json:
        """The invoice's PaymentIntent (and its invoice_payment), created on first need."""
        intent_id = invoice.get("_payment_intent")
        intent = self.objects.get("payment_intent", {}).get(intent_id) if intent_id else None
        if intent is None:
            intent = self._new_payment_intent(invoice["customer"], invoice["amount_due"], invoice["currency"], now,
                                              f"Invoice {invoice['number']}")
            intent["_invoice"] = invoice["id"]
            invoice["_payment_intent"] = intent["id"]
            invoice["payments"]["data"].append({
                "id": new_id("inpay"), "object": "invoice_payment", "amount_paid": None,
                "amount_requested": invoice["amount_due"], "currency": invoice["currency"],
                "invoice": invoice["id"], "is_default": True,
                "payment": {"type": "payment_intent", "payment_intent": intent["id"]}, "status": "open",
                "created": now,
            })
            self.emit("payment_intent.created", intent, created=now)
        return intent

    def _settle_invoice(self, invoice: Json, intent: Json, outcome: str, now: int) -> None:
        subscription = self.subscription_of(invoice)
        invoice["attempted"] = True
        if outcome != "requires_action" or not invoice.get("_action_reported"):
            invoice["attempt_count"] += 1
        if outcome == "succeeded":
            self._mark_paid(invoice, now)
            # An unpaid subscription is active again only once its most recent invoice is paid.
            reactivates = subscription is not None and (subscription["status"] in ("incomplete", "past_due") or (
                subscription["status"] == "unpaid" and subscription.get("latest_invoice") == invoice["id"]))
            if subscription is not None and reactivates:
                before = self.snapshot(subscription)
                subscription["status"] = "active"
                self.emit_update("customer.subscription.updated", subscription, before, created=now)
            return
        if outcome == "requires_action":
            invoice["_action_reported"] = True
            self.emit("invoice.payment_action_required", invoice, created=now)
        else:
            invoice["_failed_once"] = True
            failures = int(invoice.get("_failures", 0)) + 1
            invoice["_failures"] = failures
            retries = subscription is not None and invoice["billing_reason"] != "subscription_create"
            invoice["next_payment_attempt"] = \
                retry_schedule.next_attempt(self.billing_config, failures, now) if retries else None
            self.emit("invoice.payment_failed", invoice, created=now)
        if subscription is not None and subscription["status"] == "active":
            before = self.snapshot(subscription)
            subscription["status"] = "past_due"
            self.emit_update("customer.subscription.updated", subscription, before, created=now)
        if subscription is not None and invoice["next_payment_attempt"] is None and outcome == "failed" and \
                subscription["status"] == "past_due":
            self._retries_exhausted(invoice, subscription, now)

    def _retries_exhausted(self, invoice: Json, subscription: Json, now: int) -> None:
        """The account's setting for when all retries fail (emulator/billing/retry_schedule.py)."""
        ends = retry_schedule.after_retries(self.billing_config)
        if ends["invoice"] == "uncollectible" and invoice["status"] == "open":
            invoice["status"] = "uncollectible"
            invoice["status_transitions"]["marked_uncollectible_at"] = now
            invoice["status_details"] = {"uncollectible": {"reason": "max_payment_attempts"}}
            self.emit("invoice.marked_uncollectible", invoice, created=now)
        if ends["subscription"] == "cancel":
            subscription["cancellation_details"]["reason"] = "payment_failed"
            self.cancel_subscription(subscription["id"], at=now)
        elif ends["subscription"] == "unpaid":
            before = self.snapshot(subscription)
            subscription["status"] = "unpaid"
            self.emit_update("customer.subscription.updated", subscription, before, created=now)

    def _mark_paid(self, invoice: Json, now: int) -> None:
        invoice["status"] = "paid"
        invoice.pop("status_details", None)  # only an uncollectible invoice has it
        invoice["amount_paid"] = invoice["amount_due"]
        invoice["amount_remaining"] = 0
        invoice["next_payment_attempt"] = None
        invoice["status_transitions"]["paid_at"] = now
        for payment in invoice["payments"]["data"]:
            payment["status"] = "paid"
            payment["amount_paid"] = invoice["amount_due"]
            payment.setdefault("status_transitions", {})["paid_at"] = now
            self.emit("invoice_payment.paid", payment, created=now)
        self.emit("invoice.paid", invoice, created=now)
        self.emit("invoice.payment_succeeded", invoice, created=now)

    def pay_invoice(self, invoice_id: str, params: Json) -> Json:
        invoice = self.get("invoice", invoice_id, "invoice")
        if invoice["status"] == "paid":
            raise StripeApiError(400, "Invoice is already paid", code="invoice_not_editable")
        # An uncollectible invoice can still be paid (Stripe's invoice status transitions).
        if invoice["status"] in ("void", "draft"):
            raise StripeApiError(400, f"This invoice can't be paid because it is {invoice['status']}.",
                                 code="invoice_not_editable")
        now = self.now_for(invoice["customer"])
        subscription = self.subscription_of(invoice)
        pm = self._resolve_pm(params["payment_method"], invoice["customer"]) if params.get("payment_method") else None
        outcome = self._collect(invoice, subscription, now, pm)
        if outcome == "failed":
            intent = self.objects["payment_intent"][invoice["_payment_intent"]]
            pm_id = intent.get("payment_method") or ""
            raise self.card_error(intent, self.objects.get("payment_method", {}).get(pm_id))
        return invoice

    def subscription_of(self, invoice: Json) -> Json | None:
        """The invoice's subscription (basil: under parent.subscription_details), None for one-off invoices."""
        parent = invoice.get("parent") or {}
        details = parent.get("subscription_details") or {}
        subscription_id = details.get("subscription")
        return self.objects.get("subscription", {}).get(subscription_id) if subscription_id else None

    def create_invoice(self, params: Json) -> Json:
        """A one-off draft invoice (POST /v1/invoices); lines come from invoice items."""
        customer = self.get("customer", str(params["customer"]), "customer", "customer")
        now = self.now_for(customer["id"])
        invoice_id = new_id("in")
        invoice: Json = {
            "id": invoice_id, "object": "invoice", "account_country": "US", "issuer": {"type": "self"},
            "amount_due": 0, "amount_paid": 0,
            "amount_remaining": 0, "attempt_count": 0, "attempted": False,
            "auto_advance": to_bool(params["auto_advance"], "auto_advance") if "auto_advance" in params else False,
            "billing_reason": "manual",
            "collection_method": str(params.get("collection_method") or "charge_automatically"),
            "created": now, "currency": str(params.get("currency") or "usd"), "customer": customer["id"],
            "customer_email": customer.get("email"), "description": params.get("description"),
            "hosted_invoice_url": f"https://invoice.stripe.com/i/{invoice_id}",
            "lines": {"object": "list", "data": [], "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines"},
            "livemode": False, "metadata": dict(params.get("metadata") or {}), "next_payment_attempt": None,
            "number": f"EMU-{len(self.objects.get('invoice', {})) + 1:05d}", "parent": None,
            "payments": {"object": "list", "data": [], "has_more": False}, "period_end": now, "period_start": now,
            "status": "draft",
            "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                                   "voided_at": None},
            "subtotal": 0, "total": 0, "test_clock": customer.get("test_clock"),
        }
        self.put("invoice", invoice)
        self.emit("invoice.created", invoice, created=now)
        return invoice

    def create_invoice_item(self, params: Json) -> Json:
        """An invoice item added to a draft invoice (the `invoice` param is required here)."""
        customer = self.get("customer", str(params["customer"]), "customer", "customer")
        invoice = self.get("invoice", str(params["invoice"]), "invoice", "invoice")
        if invoice["customer"] != customer["id"]:
            raise StripeApiError(400, "The invoice belongs to another customer.", param="invoice")
        if invoice["status"] != "draft":
            raise StripeApiError(400, "You can only add invoice items to draft invoices.", code="invoice_not_editable",
                                 param="invoice")
        amount = to_int(params["amount"], "amount")
        now = self.now_for(customer["id"])
        item: Json = {
            "id": new_id("ii"), "object": "invoiceitem", "amount": amount, "currency": invoice["currency"],
            "customer": customer["id"], "date": now, "description": params.get("description"),
            "invoice": invoice["id"], "livemode": False, "metadata": dict(params.get("metadata") or {}),
            "parent": None, "period": {"start": now, "end": now}, "proration": False, "quantity": 1,
            "quantity_decimal": "1", "discountable": True,
            "test_clock": customer.get("test_clock"),
        }
        self.put("invoiceitem", item)
        invoice["lines"]["data"].append({
            "id": new_id("il"), "object": "line_item", "amount": amount, "currency": invoice["currency"],
            "description": item["description"], "invoice": invoice["id"], "livemode": False, "metadata": {},
            "discountable": True, "subtotal": amount,
            "parent": {"type": "invoice_item_details", "subscription_item_details": None,
                       "invoice_item_details": {"invoice_item": item["id"], "proration": False,
                                                "proration_details": {"credited_items": None},
                                                "subscription": None}},
            "period": {"start": now, "end": now}, "pricing": None, "quantity": 1,
        })
        total = sum(line["amount"] for line in invoice["lines"]["data"])
        invoice.update({"subtotal": total, "total": total, "amount_due": max(total, 0),
                        "amount_remaining": max(total, 0)})
        for lines_changed in INVOICE_LINES_CHANGED:
            lines_changed(self.as_engine(), invoice)
        self.emit("invoiceitem.created", item, created=now)
        return item

    def void_invoice(self, invoice_id: str) -> Json:
        invoice = self.get("invoice", invoice_id, "invoice")
        if invoice["status"] != "open":
            raise StripeApiError(400, "You can only void open invoices.", code="invoice_not_editable")
        now = self.now_for(invoice["customer"])
        invoice["status"] = "void"
        invoice["status_transitions"]["voided_at"] = now
        invoice["next_payment_attempt"] = None
        self.emit("invoice.voided", invoice, created=now)
        return invoice

    def _after_intent_outcome(self, intent: Json, outcome: str, now: int) -> None:
        invoice_id = intent.get("_invoice")
        if invoice_id:
            self._settle_invoice(self.objects["invoice"][invoice_id], intent, outcome, now)
