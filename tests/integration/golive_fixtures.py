"""A small stand-in for our StripeGateway (not the SDK) holding exactly what the
preflight reads: prices, webhook endpoints, portal configurations, tax settings
and payment method domains. Tests break one thing at a time. The emulator tests
cover the wire."""

from __future__ import annotations

import copy
from typing import Any

from services.config import CONSOLE_EVENT_TYPES, Settings, load_settings
from services.stripe_gateway import StripeGatewayError

SECRET_KEY = "sk_test_SECRETCANARY0123456789abcdef"
WEBHOOK_SECRET = "whsec_SECRETCANARY0123456789abcdef"
WEBHOOK_URL = "https://billing.example.com/billing/webhook"
PUBLISHABLE_KEY = "pk_test_publishable0123456789"
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
        # A closed local port: the preflight's test event fails fast (a warning) without leaving the machine.
        "SENTRY_DSN": "http://public@127.0.0.1:9/1",
        "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
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

        self.tax: dict[str, Any] = {
            "object": "tax.settings", "defaults": {"provider": "stripe", "tax_behavior": None, "tax_code": None},
            "head_office": {"address": {"city": None, "country": "US", "line1": None, "line2": None,
                                        "postal_code": None, "state": "CA"}},
            "livemode": False, "status": "active", "status_details": {"active": {}},
        }
        wallet = {"status": "active", "status_details": None}
        self.domains: list[dict[str, Any]] = [{
            "id": "pmd_1", "object": "payment_method_domain", "domain_name": "billing.example.com", "enabled": True,
            "livemode": False, "created": 1, **{m: dict(wallet) for m in ("amazon_pay", "apple_pay", "google_pay",
                                                                           "klarna", "link", "paypal")},
        }]

    def retrieve_tax_settings(self) -> dict[str, Any]:
        return copy.deepcopy(self.tax)

    def list_payment_method_domains(self, **params: Any) -> list[dict[str, Any]]:
        name = params.get("domain_name")
        return [copy.deepcopy(d) for d in self.domains if name is None or d["domain_name"] == name]

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


class LocalHttp:
    """A tiny local HTTP server for what the preflight talks to besides Stripe: a Sentry
    ingest (stores each envelope, answers 200) or a /metrics endpoint (serves `metrics_body`)."""

    def __init__(self, *, status: int = 200, metrics_body: bytes | None = None) -> None:
        import gzip
        import http.server
        import threading

        self.status = status
        self.metrics_body = metrics_body
        self.envelopes: list[bytes] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                outer.envelopes.append(body)
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_GET(self) -> None:
                body = outer.metrics_body if outer.metrics_body is not None else b"not found"
                self.send_response(outer.status if outer.metrics_body is not None else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.server.server_address[1]}/42"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_launch_ready(runtime: Any, golive_at: Any = None) -> None:
    """What people do before signing: every pre-launch checklist item done, the go-live time set."""
    from datetime import UTC, datetime

    from services import checklist, metrics

    checklist.seed_checklist(runtime.uow())
    for item in checklist.list_items(runtime.uow()):
        if item["section"] in checklist.PRE_LAUNCH_SECTIONS:
            checklist.update_item(item["key"], owner=ADMIN, status="done", note="checked", actor=ADMIN,
                                  settings=runtime.settings, uow=runtime.uow())
    metrics.set_golive_time(golive_at or datetime.now(UTC), actor=ADMIN, settings=runtime.settings, uow=runtime.uow())
