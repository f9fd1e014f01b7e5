"""The `/_emulator/` test helpers: reset, faults, rate limits, the request and delivery logs, seeding,
the account's billing settings, and the test-mode actions Stripe leaves to the Dashboard or a
browser (complete a Checkout Session, 3-D Secure, roll a webhook secret, dispute or warn on a charge)."""

from __future__ import annotations

import copy
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from emulator import settings as account_settings
from emulator.billing import retry_schedule
from emulator.billing.checkout import complete_checkout
from emulator.events.delivery import roll_endpoint_secret
from emulator.payments import setup_intents
from emulator.state import Json
from emulator.wire.protocol import StripeApiError
from emulator.wire.routes import public

if TYPE_CHECKING:
    from emulator.server import EmulatorServer


class Faults:
    def __init__(self) -> None:
        self.latency_ms = 0.0
        self.rate_429 = 0.0
        self.rate_500 = 0.0
        self.drop_webhooks = 0.0
        self.duplicate_webhooks = 0.0
        self.reorder_webhooks = False
        self.random = random.Random(1)

    def as_dict(self) -> Json:
        return {"latency_ms": self.latency_ms, "rate_429": self.rate_429, "rate_500": self.rate_500,
                "drop_webhooks": self.drop_webhooks, "duplicate_webhooks": self.duplicate_webhooks,
                "reorder_webhooks": self.reorder_webhooks}

    def update(self, values: Json) -> None:
        for key in ("latency_ms", "rate_429", "rate_500", "drop_webhooks", "duplicate_webhooks"):
            if key in values:
                setattr(self, key, float(values[key]))
        if "reorder_webhooks" in values:
            self.reorder_webhooks = bool(values["reorder_webhooks"])
        if "seed" in values:
            self.random = random.Random(int(values["seed"]))


class TokenBucket:
    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.tokens = per_second
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.per_second, self.tokens + (now - self.updated) * self.per_second)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


def admin_action(emulator: EmulatorServer, method: str, action: str, payload: Json) -> Any:
    engine = emulator.engine
    if action == "reset" and method == "POST":
        emulator.reset()
        return {"ok": True}
    if action == "faults":
        if method == "POST":
            emulator.faults.update(payload)
        return emulator.faults.as_dict()
    if action == "rate_limit" and method == "POST":
        emulator.bucket = TokenBucket(float(payload["per_second"]))
        return {"per_second": emulator.bucket.per_second}
    if action == "misbehave":
        if method == "POST":
            with engine.lock:
                engine.misbehave = dict(payload)
        return engine.misbehave
    if action == "requests":
        if method == "DELETE":
            with engine.lock:
                emulator.request_log.clear()
            return {"ok": True}
        with engine.lock:
            return {"data": list(emulator.request_log)}
    if action == "deliveries":
        with engine.lock:
            return {"data": list(emulator.delivery_log)}
    if action == "webhooks/flush":
        emulator.delivery.flush(float(payload.get("timeout", 60)))
        return {"ok": True}
    if action == "webhooks/config" and method == "POST":
        if "retry_delays_s" in payload:
            emulator.delivery.retry_delays = tuple(float(d) for d in payload["retry_delays_s"])
        if "max_attempts" in payload:
            emulator.delivery.max_attempts = int(payload["max_attempts"])
        return {"retry_delays_s": emulator.delivery.retry_delays, "max_attempts": emulator.delivery.max_attempts}
    if action == "seed" and method == "POST":
        from emulator.seed import seed_month

        with engine.lock:
            return seed_month(engine, customers=int(payload.get("customers", 300)), seed=int(payload.get("seed", 42)))
    if action == "billing/config":
        # Account billing settings: the days before renewal that invoice.upcoming is sent, and the
        # retry schedule with what happens after the last retry (emulator/billing/retry_schedule.py).
        with engine.lock:
            if method == "POST":
                update = dict(engine.billing_config)
                if "upcoming_days" in payload:
                    update["upcoming_days"] = int(payload["upcoming_days"])
                if "retries" in payload:
                    update["retries"] = retry_schedule.parse_retries(payload["retries"])
                if "after_retries" in payload:
                    update["after_retries"] = retry_schedule.parse_after_retries(payload["after_retries"],
                                                                                 update["after_retries"])
                engine.billing_config = update
            return copy.deepcopy(engine.billing_config)
    if action == "tick" and method == "POST":
        with engine.lock:
            engine.tick_realtime()
        return {"ok": True}
    parts = action.split("/")
    if len(parts) == 4 and parts[0] == "checkout" and parts[1] == "sessions" and parts[3] == "complete":
        with engine.lock:
            return complete_checkout(engine, parts[2], str(payload.get("payment_method", "pm_card_visa")))
    if len(parts) == 3 and parts[0] == "webhook_endpoints" and parts[2] == "roll_secret" and method == "POST":
        # Test helper for the Dashboard-only "Roll secret" (returns the new secret once).
        with engine.lock:
            endpoint = engine.get("webhook_endpoint", parts[1], "webhook_endpoint")
            return roll_endpoint_secret(endpoint, float(payload.get("expires_in_s", 86400)), time.time())
    if len(parts) == 3 and parts[0] == "setup_intents" and parts[2] == "authenticate" and method == "POST":
        with engine.lock:
            return public(setup_intents.authenticate(engine, parts[1]))
    if len(parts) == 3 and parts[0] == "payment_intents" and parts[2] == "authenticate":
        with engine.lock:
            return public(engine.authenticate_payment_intent(parts[1]))
    if len(parts) == 3 and parts[0] == "charges" and parts[2] == "dispute":
        # Test helper: the cardholder disputes an existing charge.
        with engine.lock:
            charge = engine.get("charge", parts[1], "charge")
            return public(engine.create_dispute_for(charge, engine.now_for(charge.get("customer")),
                                                           reason=str(payload.get("reason", "fraudulent"))))
    if len(parts) == 3 and parts[0] == "charges" and parts[2] == "early_fraud_warning" and method == "POST":
        # Test helper: the issuer reports fraud on an existing charge (pm_card_createIssuerFraudRecord does
        # this at once); lets a warning sit on a card with other test behaviour, e.g. pm_card_refundFail.
        with engine.lock:
            charge = engine.get("charge", parts[1], "charge")
            return public(engine.create_efw_for(charge, engine.now_for(charge.get("customer")),
                                                       str(payload.get("fraud_type", "made_with_stolen_card"))))
    if len(parts) == 3 and parts[0] == "early_fraud_warnings" and parts[2] == "set":
        with engine.lock:
            warning = engine.get("radar.early_fraud_warning", parts[1], "radar.early_fraud_warning")
            if "actionable" in payload:
                before = engine.snapshot(warning)
                warning["actionable"] = bool(payload["actionable"])
                engine.emit_update("radar.early_fraud_warning.updated", warning, before,
                                   created=engine.now_for(None))
            return public(copy.deepcopy(warning))
    if len(parts) == 3 and parts[0] == "payment_method_domains" and parts[2] == "set" and method == "POST":
        # Test helper: a wallet's verification on the domain failed (or passed again).
        with engine.lock:
            return account_settings.set_domain_states(engine, parts[1], payload)
    if len(parts) == 3 and parts[0] == "disputes" and parts[2] == "escalate" and method == "POST":
        # Test helper: the cardholder's bank turns an inquiry into a chargeback.
        with engine.lock:
            dispute = engine.get("dispute", parts[1], "dispute")
            customer = engine.objects["charge"][dispute["charge"]].get("customer")
            at = max(engine.now_for(customer), int(dispute["created"]) + 1)  # never before it opened
            return public(copy.deepcopy(engine.escalate_inquiry(parts[1], at)))
    if len(parts) == 3 and parts[0] == "disputes" and parts[2] == "set":
        # Test helper: move a dispute's deadline or status (e.g. to test "past due_by").
        with engine.lock:
            dispute = engine.get("dispute", parts[1], "dispute")
            if "due_by" in payload:
                dispute["evidence_details"]["due_by"] = int(payload["due_by"])
            if "status" in payload:
                dispute["status"] = str(payload["status"])
            return public(copy.deepcopy(dispute))
    raise StripeApiError(404, f"Unknown emulator action: {method} /_emulator/{action}")
