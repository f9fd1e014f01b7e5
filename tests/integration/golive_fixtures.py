"""A small stand-in for our StripeGateway (not the SDK) holding exactly what the
preflight reads: prices, webhook endpoints and portal configurations. Tests
break one thing at a time. The emulator tests cover the wire."""

from __future__ import annotations

import copy
from typing import Any

from services.config import CONSOLE_EVENT_TYPES, Settings, load_settings
from services.stripe_gateway import StripeGatewayError

SECRET_KEY = "sk_test_SECRETCANARY0123456789abcdef"
WEBHOOK_SECRET = "whsec_SECRETCANARY0123456789abcdef"
WEBHOOK_URL = "https://billing.example.com/billing/webhook"
ADMIN = "admin@example.com"
ENG_LEAD = "eng.lead@example.com"
PRODUCT_OWNER = "product.owner@example.com"
PRICES = {"price_basic_monthly": ("month", 1000), "price_pro_monthly": ("month", 3000)}


def golive_env(database_url: str, **overrides: str | None) -> dict[str, str]:
    env: dict[str, str] = {
        "DATABASE_URL": database_url,
        "STRIPE_API_KEY": SECRET_KEY,
        "STRIPE_MODE": "test",
        "STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "STRIPE_PRICE_BASIC_MONTHLY": "price_basic_monthly",
        "STRIPE_PRICE_PRO_MONTHLY": "price_pro_monthly",
        "ADMIN_EMAILS": ADMIN,
        "ADMIN_EMAIL_DOMAIN": "example.com",
        "SIGNOFF_ENG_LEADS": ENG_LEAD,
        "SIGNOFF_PRODUCT_OWNERS": PRODUCT_OWNER,
        "CONSOLE_WEBHOOK_URL": WEBHOOK_URL,
        "RECONCILE_CRON_ENABLED": "true",
        "SENTRY_DSN": "https://public@sentry.example.com/1",
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def golive_settings(database_url: str, **overrides: str | None) -> Settings:
    return load_settings(golive_env(database_url, **overrides), env_file=None)


class FakePreflightGateway:
    def __init__(self) -> None:
        self.reachable = True
        self.prices: dict[str, dict[str, Any]] = {
            price_id: {"id": price_id, "object": "price", "active": True, "livemode": False,
                       "unit_amount": amount, "currency": "usd", "recurring": {"interval": interval}}
            for price_id, (interval, amount) in PRICES.items()
        }
        self.endpoints: list[dict[str, Any]] = [
            {"id": "we_1", "url": WEBHOOK_URL, "status": "enabled", "enabled_events": list(CONSOLE_EVENT_TYPES)}
        ]
        self.portal: list[dict[str, Any]] = [{
            "id": "bpc_1", "active": True, "is_default": True,
            "features": {
                "subscription_update": {"enabled": True, "products": [
                    {"product": "prod_1", "prices": list(PRICES)}]},
                "payment_method_update": {"enabled": True},
                "invoice_history": {"enabled": True},
                "subscription_cancel": {"enabled": True},
            },
        }]

    def ping(self) -> dict[str, Any]:
        if not self.reachable:
            raise StripeGatewayError("Invalid API Key provided: sk_test_****cdef", code="authentication_error")
        return {"object": "balance"}

    def retrieve_price(self, price_id: str) -> dict[str, Any]:
        if price_id not in self.prices:
            raise StripeGatewayError("Stripe has no such object (it may belong to the other mode or was deleted).",
                                     code="resource_missing")
        return copy.deepcopy(self.prices[price_id])

    def list_webhook_endpoints(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.endpoints)

    def list_portal_configurations(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.portal)
