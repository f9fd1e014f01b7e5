"""Customers, products and prices."""

from __future__ import annotations

import time
from typing import Any

from emulator.billing import calendar as billing_calendar
from emulator.payments.methods import PaymentMethodsMixin
from emulator.state import Json, new_id
from emulator.wire.protocol import StripeApiError, to_bool, to_int


class CustomersMixin(PaymentMethodsMixin):
    # --- customers and payment methods -----------------------------------------------
    def create_customer(self, params: Json, *, created: int | None = None) -> Json:
        clock = params.get("test_clock")
        if clock:
            self.get("test_clock", clock, "test clock", "test_clock")
        now = created or (int(self.objects["test_clock"][clock]["frozen_time"]) if clock else int(time.time()))
        customer: Json = {
            "id": new_id("cus"),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": now,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": params.get("description"),
            "email": params.get("email"),
            "invoice_settings": {"default_payment_method": None, "custom_fields": None, "footer": None},
            "livemode": False,
            "metadata": dict(params.get("metadata") or {}),
            "name": params.get("name"),
            "phone": params.get("phone"),
            "test_clock": clock,
        }
        self.put("customer", customer)
        self.emit("customer.created", customer, created=now)
        payment_method = params.get("payment_method")
        if payment_method:
            pm = self.attach_payment_method(payment_method, customer["id"])
            customer["invoice_settings"]["default_payment_method"] = pm["id"]
        default_pm = (params.get("invoice_settings") or {}).get("default_payment_method")
        if default_pm:
            customer["invoice_settings"]["default_payment_method"] = self._resolve_pm(default_pm, customer["id"])["id"]
        return customer

    def update_customer(self, customer_id: str, params: Json) -> Json:
        customer = self.get("customer", customer_id, "customer")
        before = self.snapshot(customer)
        for field in ("email", "name", "description", "phone"):
            if field in params:
                customer[field] = params[field] or None
        if "metadata" in params:
            self._merge_metadata(customer, params["metadata"])
        settings = params.get("invoice_settings") or {}
        if "default_payment_method" in settings:
            pm_id = settings["default_payment_method"]
            customer["invoice_settings"]["default_payment_method"] = (
                self._resolve_pm(pm_id, customer_id)["id"] if pm_id else None
            )
        self.emit_update("customer.updated", customer, before, created=self.now_for(customer_id))
        return customer

    @staticmethod
    def _merge_metadata(obj: Json, metadata: Any) -> None:
        if metadata == "":
            obj["metadata"] = {}
            return
        if not isinstance(metadata, dict):
            raise StripeApiError(400, "Invalid hash", code="parameter_invalid_empty", param="metadata")
        for key, value in metadata.items():
            if value == "":
                obj["metadata"].pop(key, None)
            else:
                obj["metadata"][key] = str(value)

    # --- products and prices ------------------------------------------------------------
    def create_product(self, params: Json, *, created: int | None = None) -> Json:
        product = {
            "id": params.get("id") or new_id("prod"),
            "object": "product",
            "active": to_bool(params.get("active", True), "active"),
            "created": created or int(time.time()),
            "description": params.get("description"),
            "livemode": False,
            "metadata": dict(params.get("metadata") or {}),
            "name": params["name"],
            "type": "service",
            "updated": created or int(time.time()),
        }
        self.put("product", product)
        self.emit("product.created", product, created=product["created"])
        return product

    def create_price(self, params: Json, *, created: int | None = None) -> Json:
        product_id = params.get("product")
        if not product_id:
            product_data = params.get("product_data") or {}
            if not product_data.get("name"):
                raise StripeApiError(400, "Missing required param: product.", code="parameter_missing", param="product")
            product_id = self.create_product({"name": product_data["name"]}, created=created)["id"]
        else:
            self.get("product", product_id, "product", "product")
        recurring = params.get("recurring")
        if recurring:
            interval = recurring.get("interval")
            if interval not in billing_calendar.INTERVALS:
                raise StripeApiError(
                    400, "Invalid recurring[interval]: must be one of day, week, month, or year",
                    code="parameter_invalid_string", param="recurring[interval]",
                )
            recurring = {
                "interval": interval,
                "interval_count": to_int(recurring.get("interval_count", 1), "recurring[interval_count]", minimum=1),
                "usage_type": "licensed",
                "aggregate_usage": None,
                "meter": None,
                "trial_period_days": None,
            }
        price = {
            "id": params.get("id") or new_id("price"),
            "object": "price",
            "active": to_bool(params.get("active", True), "active"),
            "billing_scheme": "per_unit",
            "created": created or int(time.time()),
            "currency": str(params.get("currency", "usd")).lower(),
            "livemode": False,
            "lookup_key": params.get("lookup_key"),
            "metadata": dict(params.get("metadata") or {}),
            "nickname": params.get("nickname"),
            "product": product_id,
            "recurring": recurring,
            "tax_behavior": "unspecified",
            "type": "recurring" if recurring else "one_time",
            "unit_amount": to_int(params.get("unit_amount", 0), "unit_amount", minimum=0),
            "unit_amount_decimal": str(params.get("unit_amount", 0)),
        }
        self.put("price", price)
        self.emit("price.created", price, created=price["created"])
        return price

    # --- subscriptions and invoices ----------------------------------------------------------
    def _price(self, price_id: str, param: str) -> Json:
        price = self.get("price", price_id, "price", param)
        if not price.get("recurring"):
            raise StripeApiError(400, "The price specified is set to `type=one_time` but this field only accepts "
                                      "prices with `type=recurring`.", param=param)
        return price
