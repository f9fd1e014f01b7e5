"""The invoice preview (create_preview and invoice.upcoming's invoice)."""

from __future__ import annotations

import copy

from emulator.billing.subscriptions import SubscriptionsMixin
from emulator.state import Json, new_id
from emulator.wire.protocol import StripeApiError, to_int


class InvoicePreviewMixin(SubscriptionsMixin):
    def preview_invoice(self, params: Json) -> Json:
        subscription_id = params.get("subscription")
        details = params.get("subscription_details") or {}
        if subscription_id:
            subscription = copy.deepcopy(self.get("subscription", subscription_id, "subscription", "subscription"))
        else:
            customer_id = params.get("customer")
            if not customer_id:
                raise StripeApiError(400, "Missing required param: customer or subscription.",
                                     code="parameter_missing", param="customer")
            items = details.get("items") or []
            if not items:
                raise StripeApiError(400, "Missing required param: subscription_details[items].",
                                     code="parameter_missing", param="subscription_details[items]")
            now = self.now_for(customer_id)
            price = self._price(str(items[0].get("price")), "subscription_details[items][0][price]")
            subscription = {"id": "sub_preview", "customer": customer_id, "currency": price["currency"],
                            "metadata": {}, "test_clock": None,
                            "items": {"data": [self._new_item("sub_preview", price, 1, now,
                                                              self.period_end(price, now, now))]}}
        now = self.now_for(subscription["customer"])
        at = to_int(details.get("proration_date", now), "subscription_details[proration_date]")
        behaviour = details.get("proration_behavior", "create_prorations")
        lines: list[Json] = []
        if subscription_id:
            lines.extend(copy.deepcopy(self.pending_prorations.get(subscription_id, [])))
            for index, change in enumerate(details.get("items") or []):
                item = next((i for i in subscription["items"]["data"] if i["id"] == change.get("id")),
                            subscription["items"]["data"][0])
                if change.get("price") and change["price"] != item["price"]["id"]:
                    new_price = self._price(change["price"], f"subscription_details[items][{index}][price]")
                    if behaviour != "none":
                        lines.extend(self._prorations(subscription, item, new_price, at))
                    item["price"] = copy.deepcopy(new_price)
                item["plan"] = self.plan_of(new_price)
        immediate = behaviour == "always_invoice"
        if not immediate:
            for item in subscription["items"]["data"]:
                anchor = int(subscription.get("billing_cycle_anchor") or item["current_period_start"])
                start = item["current_period_end"] if subscription_id else item["current_period_start"]
                end = self.period_end(item["price"], anchor, start)
                lines.append(self._line(subscription, item, item["price"], item["price"]["unit_amount"] *
                                        item["quantity"], start, end, proration=False,
                                        description=f"{item['quantity']} × {self._product_name(item['price'])}"))
        total = sum(line["amount"] for line in lines)
        return {
            "id": new_id("upcoming_in"),
            "object": "invoice",
            "amount_due": max(0, total),
            "amount_paid": 0,
            "amount_remaining": max(0, total),
            "billing_reason": "upcoming" if not immediate else "subscription_update",
            "created": now,
            "currency": subscription["currency"],
            "customer": subscription["customer"],
            "lines": {"object": "list", "data": lines, "has_more": False, "url": "/v1/invoices/upcoming/lines"},
            "livemode": False,
            "parent": {"type": "subscription_details",
                       "subscription_details": {"subscription": subscription_id, "metadata": {}}},
            "period_end": subscription["items"]["data"][0]["current_period_end"],
            "period_start": subscription["items"]["data"][0]["current_period_start"],
            "status": "draft",
            "subtotal": total,
            "total": total,
        }
