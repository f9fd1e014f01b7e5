"""Subscriptions: create, update (prorations), cancel; items and their billing periods."""

from __future__ import annotations

import copy

from emulator.billing import calendar as billing_calendar
from emulator.billing.invoices import InvoicesMixin
from emulator.state import SUBSCRIPTION_PARAMS, Json, new_id
from emulator.wire.protocol import StripeApiError, missing, to_bool, to_int


class SubscriptionsMixin(InvoicesMixin):
    @staticmethod
    def period_end(price: Json, anchor: int, start: int) -> int:
        """Where the period that starts at `start` ends, on the billing calendar anchored at `anchor`."""
        return billing_calendar.period_end(price, anchor, start)

    def create_subscription(self, params: Json, *, now: int | None = None) -> Json:
        customer_id = params["customer"]
        customer = self.get("customer", customer_id, "customer", "customer")
        items_in = params.get("items") or []
        if not isinstance(items_in, list) or not items_in:
            raise StripeApiError(400, "Missing required param: items.", code="parameter_missing", param="items")
        now = now or self.now_for(customer_id)
        subscription_id = new_id("sub")
        items: list[Json] = []
        for index, item in enumerate(items_in):
            price = self._price(str(item.get("price")), f"items[{index}][price]")
            items.append(self._new_item(subscription_id, price, to_int(item.get("quantity", 1), "quantity", minimum=1),
                                        now, self.period_end(price, now, now)))
        pm_param = params.get("default_payment_method")
        default_pm = self._resolve_pm(pm_param, customer_id)["id"] if pm_param else None
        subscription = {
            "id": subscription_id,
            "object": "subscription",
            "billing_cycle_anchor": now,
            # Since 2025-09-30.clover new subscriptions default to flexible billing mode.
            "billing_mode": {"type": "flexible", "flexible": None, "updated_at": now},
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "created": now,
            "currency": items[0]["price"]["currency"],
            "customer": customer["id"],
            "default_payment_method": default_pm,
            "ended_at": None,
            "items": {"object": "list", "data": items, "has_more": False,
                      "url": f"/v1/subscription_items?subscription={subscription_id}"},
            "latest_invoice": None,
            "livemode": False,
            "metadata": dict(params.get("metadata") or {}),
            "pending_update": None,
            "start_date": now,
            "status": "incomplete",
            "test_clock": customer.get("test_clock"),
            "trial_end": None,
            "trial_start": None,
        }
        behaviour = params.get("payment_behavior", "allow_incomplete")
        if behaviour not in ("allow_incomplete", "default_incomplete", "error_if_incomplete"):
            raise StripeApiError(400, f"Invalid payment_behavior: {behaviour}", code="parameter_invalid_string",
                                 param="payment_behavior")
        self.put("subscription", subscription)
        for apply_params in SUBSCRIPTION_PARAMS:
            apply_params(self.as_engine(), subscription, params, now)
        self.emit("customer.subscription.created", subscription, created=now)
        invoice = self._invoice_for(subscription, "subscription_create", self._item_lines(subscription, now), now)
        if behaviour == "default_incomplete" and invoice["status"] == "open":
            # The first invoice's PaymentIntent waits for the integration to confirm it.
            self._intent_for(invoice, now)
            return subscription
        outcome = self._collect(invoice, subscription, now)
        if outcome != "succeeded" and behaviour == "error_if_incomplete":
            # Stripe creates no subscription and answers 402 with the invoice's PaymentIntent.
            intent = self.objects["payment_intent"][invoice["_payment_intent"]]
            subscription["deleted"] = True
            pm_id = intent.get("payment_method") or ""
            raise self.card_error(intent, self.objects.get("payment_method", {}).get(pm_id))
        return subscription

    def _new_item(self, subscription_id: str, price: Json, quantity: int, start: int, end: int) -> Json:
        return {
            "id": new_id("si"),
            "object": "subscription_item",
            "created": start,
            "current_period_end": end,
            "current_period_start": start,
            "metadata": {},
            "plan": self.plan_of(price),
            "price": copy.deepcopy(price),
            "quantity": quantity,
            "subscription": subscription_id,
        }

    @staticmethod
    def plan_of(price: Json) -> Json:
        """The legacy `plan` view Stripe still gives of a recurring price on subscription items."""
        recurring = price.get("recurring") or {}
        return {
            "id": price["id"], "object": "plan", "active": price["active"], "amount": price["unit_amount"],
            "amount_decimal": price["unit_amount_decimal"], "billing_scheme": price["billing_scheme"],
            "created": price["created"], "currency": price["currency"], "interval": recurring.get("interval"),
            "interval_count": recurring.get("interval_count", 1), "livemode": False,
            "metadata": dict(price.get("metadata") or {}), "meter": recurring.get("meter"),
            "nickname": price.get("nickname"), "product": price["product"], "tiers_mode": None,
            "transform_usage": None, "trial_period_days": recurring.get("trial_period_days"),
            "usage_type": recurring.get("usage_type", "licensed"),
        }

    def _prorations(self, subscription: Json, item: Json, new_price: Json, at: int) -> list[Json]:
        start, end = item["current_period_start"], item["current_period_end"]
        fraction = max(0.0, min(1.0, (end - at) / max(1, end - start)))
        old_price = item["price"]
        unused = -round(old_price["unit_amount"] * item["quantity"] * fraction)
        remaining = round(new_price["unit_amount"] * item["quantity"] * fraction)
        return [
            self._line(subscription, item, old_price, unused, at, end, proration=True,
                       description=f"Unused time on {self._product_name(old_price)}"),
            self._line(subscription, item, new_price, remaining, at, end, proration=True,
                       description=f"Remaining time on {self._product_name(new_price)}"),
        ]

    def update_subscription(self, subscription_id: str, params: Json) -> Json:
        subscription = self.get("subscription", subscription_id, "subscription")
        if subscription["status"] in ("canceled", "incomplete_expired"):
            raise StripeApiError(400, "A canceled subscription can only update its cancellation_details and "
                                      "metadata.")
        now = self.now_for(subscription["customer"])
        before = self.snapshot(subscription)
        proration_behavior = params.get("proration_behavior", "create_prorations")
        if proration_behavior not in ("create_prorations", "none", "always_invoice"):
            raise StripeApiError(400, "Invalid proration_behavior", code="parameter_invalid_string",
                                 param="proration_behavior")
        proration_at = to_int(params.get("proration_date", now), "proration_date")
        items_in = params.get("items") or []
        ignore_price = bool(self.misbehave.get("downgrade_cancels"))
        proration_lines: list[Json] = []
        for index, change in enumerate(items_in):
            item = next((i for i in subscription["items"]["data"] if i["id"] == change.get("id")), None)
            if item is None and change.get("id"):
                raise missing("subscription_item", str(change.get("id")), f"items[{index}][id]")
            if item is None:
                item = subscription["items"]["data"][0]
            if change.get("price") and change["price"] != item["price"]["id"]:
                new_price = self._price(change["price"], f"items[{index}][price]")
                if ignore_price:
                    continue
                if proration_behavior != "none":
                    proration_lines.extend(self._prorations(subscription, item, new_price, proration_at))
                item["price"] = copy.deepcopy(new_price)
                item["plan"] = self.plan_of(new_price)
            if change.get("quantity"):
                item["quantity"] = to_int(change["quantity"], f"items[{index}][quantity]", minimum=1)
        if "cancel_at_period_end" in params:
            value = to_bool(params["cancel_at_period_end"], "cancel_at_period_end")
            if not (ignore_price and value is False and subscription["cancel_at_period_end"]):
                subscription["cancel_at_period_end"] = value
                end = subscription["items"]["data"][0]["current_period_end"]
                subscription["cancel_at"] = end if value else None
                subscription["canceled_at"] = now if value else None
        if "metadata" in params:
            self._merge_metadata(subscription, params["metadata"])
        if params.get("default_payment_method"):
            subscription["default_payment_method"] = self._resolve_pm(params["default_payment_method"],
                                                                      subscription["customer"])["id"]
        for apply_params in SUBSCRIPTION_PARAMS:
            apply_params(self.as_engine(), subscription, params, now)
        # The subscription's update comes first; the proration invoice's events follow it.
        self.emit_update("customer.subscription.updated", subscription, before, created=now)
        if proration_lines:
            if proration_behavior == "always_invoice":
                invoice = self._invoice_for(subscription, "subscription_update", proration_lines, now)
                self._collect(invoice, subscription, now)
            else:
                self.pending_prorations.setdefault(subscription_id, []).extend(proration_lines)
        return subscription

