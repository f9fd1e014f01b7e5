"""The emulator's state and Stripe's billing behaviour: objects, payments, test
cards, subscriptions and invoices, disputes, EFWs, refunds, test clocks, events.

All mutation happens under one re-entrant lock. Time is per customer: a
customer on a test clock lives at the clock's frozen time, everyone else at
wall-clock time. Shapes follow API version 2025-03-31.basil and later
(billing periods on subscription items, invoice.parent.subscription_details).
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from emulator.billing import calendar as billing_calendar
from emulator.billing import retry_schedule
from emulator.objects import catalogue
from emulator.payments import refund_outcomes, test_cards
from emulator.wire.protocol import StripeApiError, missing, to_bool, to_int

API_VERSION = "2026-10-28.endive"
DAY = 86_400
DISPUTE_RESPONSE_DAYS = 7
DISPUTE_FEE = 1500  # Stripe's dispute fee in USD minor units, on the withdrawal balance transaction
FILE_MAX_BYTES = 5 * 1024 * 1024
EVIDENCE_TEXT_LIMIT = 150_000

EVIDENCE_TEXT_FIELDS = {
    "access_activity_log", "billing_address", "cancellation_policy_disclosure", "cancellation_rebuttal",
    "customer_email_address", "customer_name", "customer_purchase_ip", "duplicate_charge_explanation",
    "duplicate_charge_id", "product_description", "refund_policy_disclosure", "refund_refusal_explanation",
    "service_date", "shipping_address", "shipping_carrier", "shipping_date", "shipping_tracking_number",
    "uncategorized_text",
}
EVIDENCE_FILE_FIELDS = {
    "cancellation_policy", "customer_communication", "customer_signature", "duplicate_charge_documentation",
    "receipt", "refund_policy", "service_documentation", "shipping_documentation", "uncategorized_file",
}

Json = dict[str, Any]


class SubscriptionWork(Protocol):
    """Scheduled work other modules add to a subscription's timeline (subscription schedules'
    phase switches): `due` names the time of the next piece at or before `until`, `run` does it."""

    def due(self, engine: Engine, subscription: Json, until: int) -> int | None: ...

    def run(self, engine: Engine, subscription: Json, at: int) -> None: ...


# Registered by the modules that add such work; run before a renewal due at the same second.
SUBSCRIPTION_WORK: list[SubscriptionWork] = []
# Called as (engine, clock_id, frozen_time) when a test clock advances, before its subscriptions.
CLOCK_WORK: list[Callable[[Engine, str, int], None]] = []
# Called as (engine, subscription, params, now) when a subscription is created or updated, before its
# event (the discounts module applies the `discounts` param).
SUBSCRIPTION_PARAMS: list[Callable[[Engine, Json, Json, int], None]] = []
# Called as (engine, invoice, subscription, now) on a new subscription invoice before it is stored
# (discounts: total_discount_amounts, line discount_amounts, totals).
INVOICE_ADJUST: list[Callable[[Engine, Json, Json, int], None]] = []
# Called as (engine, invoice) after an invoice item changed a draft's lines (discounts recompute).
INVOICE_LINES_CHANGED: list[Callable[[Engine, Json], None]] = []


def public_copy(obj: Json) -> Json:
    """A snapshot of `obj` without the emulator's private (`_`) keys, for embedding in another object."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


def changed_fields(before: Json, after: Json) -> Json:
    """Stripe's previous_attributes: the old value of each changed field; inside a hash only the
    changed keys (null for a key that was added); an array that changed is given whole."""
    previous: Json = {}
    for key in before.keys() | after.keys():
        if key.startswith("_"):
            continue
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            previous[key] = changed_fields(old, new)
        else:
            previous[key] = copy.deepcopy(old)
    return previous


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# Visa CE 3.0 (docs.stripe.com/disputes/api/visa-ce3): the disputed payment and both prior undisputed
# payments must share two main evidence elements, or one main and one secondary. Device fingerprint and
# device id count as one main element. In test mode Stripe does not check the prior payments' payment
# method or dates, but it does check these elements.
CE3_MAIN = (("customer_purchase_ip",), ("customer_device_fingerprint", "customer_device_id"))
CE3_SECONDARY = ("shipping_address", "customer_email_address", "customer_account_id")
CE3_TEXT = {"customer_account_id", "customer_device_fingerprint", "customer_device_id", "customer_email_address",
            "customer_purchase_ip", "product_description"}
ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")


def _ce3_same(transactions: list[Json], field: str) -> bool:
    values = [t.get(field) for t in transactions]
    return all(v not in (None, "", {}) for v in values) and all(v == values[0] for v in values)


def ce3_eligibility(ce3: Json) -> Json:
    """`evidence_details.enhanced_eligibility.visa_compelling_evidence_3` for the evidence so far."""
    disputed = ce3.get("disputed_transaction") or {}
    priors = [p for p in ce3.get("prior_undisputed_transactions") or [] if p.get("charge")]
    actions = []
    if not disputed.get("product_description"):
        actions.append("missing_disputed_transaction_description")
    if disputed.get("merchandise_or_services") not in ("merchandise", "services"):
        actions.append("missing_merchandise_or_services")
    if len(priors) < 2:
        actions.append("missing_prior_undisputed_transactions")
    elif not all(p.get("product_description") for p in priors):
        actions.append("missing_prior_undisputed_transaction_description")
    chain = [disputed, *priors[:2]]
    main = sum(1 for group in CE3_MAIN if any(_ce3_same(chain, f) for f in group)) if len(chain) == 3 else 0
    secondary = sum(1 for f in CE3_SECONDARY if _ce3_same(chain, f)) if len(chain) == 3 else 0
    if not (main >= 2 or (main >= 1 and secondary >= 1)):
        actions.append("missing_customer_identifiers")
    return {"required_actions": sorted(actions), "status": "requires_action" if actions else "qualified"}


def _ce3_transaction(raw: Any, param: str, *, prior: bool) -> Json:
    if not isinstance(raw, dict):
        raise StripeApiError(400, "Invalid hash", code="parameter_invalid_empty", param=param)
    allowed = CE3_TEXT | {"shipping_address"} | ({"charge"} if prior else {"merchandise_or_services"})
    for name in raw:
        if name not in allowed:
            raise StripeApiError(400, f"Received unknown parameter: {param}[{name}]", code="parameter_unknown",
                                 param=f"{param}[{name}]")
    if not prior and raw.get("merchandise_or_services") not in (None, "", "merchandise", "services"):
        raise StripeApiError(400, f"Invalid {param}[merchandise_or_services]: must be one of merchandise or "
                                  "services", code="parameter_invalid_string",
                             param=f"{param}[merchandise_or_services]")
    shipping = raw.get("shipping_address")
    if shipping not in (None, "") and not isinstance(shipping, dict):
        raise StripeApiError(400, "Invalid hash", code="parameter_invalid_empty", param=f"{param}[shipping_address]")
    result: Json = {name: (raw.get(name) or None) for name in CE3_TEXT}
    result["shipping_address"] = {k: (shipping or {}).get(k) or None for k in ADDRESS_FIELDS} if shipping else None
    if prior:
        result["charge"] = raw.get("charge") or None
    else:
        result["merchandise_or_services"] = raw.get("merchandise_or_services") or None
    return result


def _merge_ce3(dispute: Json, enhanced: Any) -> Json | None:
    """Validate `evidence[enhanced_evidence]` and return the merged visa_compelling_evidence_3 object."""
    if enhanced in (None, "", {}):
        return None
    if not isinstance(enhanced, dict):
        raise StripeApiError(400, "Invalid hash", code="parameter_invalid_empty", param="evidence[enhanced_evidence]")
    for name in enhanced:
        if name not in ("visa_compelling_evidence_3", "visa_compliance", "mastercard_compliance"):
            raise StripeApiError(400, f"Received unknown parameter: evidence[enhanced_evidence][{name}]",
                                 code="parameter_unknown", param=f"evidence[enhanced_evidence][{name}]")
    raw = enhanced.get("visa_compelling_evidence_3")
    if raw is None:
        return None
    param = "evidence[enhanced_evidence][visa_compelling_evidence_3]"
    # Stripe lists eligible disputes in enhanced_eligibility_types and also takes CE 3.0 evidence added by hand
    # for a Visa 10.4 dispute it did not list (docs: "Autofilled evidence").
    if "visa_compelling_evidence_3" not in dispute.get("enhanced_eligibility_types", []) \
            and dispute.get("network_reason_code") != "10.4":
        raise StripeApiError(400, "This dispute is not eligible for Visa Compelling Evidence 3.0.", param=param)
    if not isinstance(raw, dict):
        raise StripeApiError(400, "Invalid hash", code="parameter_invalid_empty", param=param)
    current = (dispute["evidence"].get("enhanced_evidence") or {}).get("visa_compelling_evidence_3") or {}
    merged = dict(current)
    if "disputed_transaction" in raw:
        merged["disputed_transaction"] = _ce3_transaction(raw["disputed_transaction"],
                                                          f"{param}[disputed_transaction]", prior=False)
    if "prior_undisputed_transactions" in raw:
        priors = raw["prior_undisputed_transactions"] or []
        if not isinstance(priors, list):
            raise StripeApiError(400, "Invalid array", code="parameter_invalid_empty",
                                 param=f"{param}[prior_undisputed_transactions]")
        merged["prior_undisputed_transactions"] = [
            _ce3_transaction(p, f"{param}[prior_undisputed_transactions][{i}]", prior=True)
            for i, p in enumerate(priors)]
    return merged


# Modules that keep objects derived from another one register here: called after each put of that kind.
PUT_HOOKS: dict[str, list[Callable[[Engine, Json], None]]] = {}


class Engine:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.objects: dict[str, dict[str, Json]] = {}
            self.events: list[Json] = []
            self.misbehave: Json = {}
            self.on_event: Callable[[Json], None] | None = getattr(self, "on_event", None)
            self.pending_prorations: dict[str, list[Json]] = {}
            self.invoices_by_subscription: dict[str, list[str]] = {}
            self._current_request: Json = {"id": None, "idempotency_key": None}
            self.billing_config: Json = {"upcoming_days": billing_calendar.DEFAULT_UPCOMING_DAYS,
                                         **retry_schedule.default_config()}

    # --- storage -----------------------------------------------------------------
    def put(self, kind: str, obj: Json) -> Json:
        if "_seq" not in obj:  # insertion order breaks ties between objects created in the same second
            self._seq = getattr(self, "_seq", 0) + 1
            obj["_seq"] = self._seq
        self.objects.setdefault(kind, {})[obj["id"]] = obj
        for hook in PUT_HOOKS.get(kind, ()):  # e.g. a charge's balance transaction (emulator/balance.py)
            hook(self, obj)
        return obj

    def later(self, delay_s: float, action: Callable[[], None]) -> None:
        """Run `action` under the lock shortly after this request, like Stripe's async work."""

        def run() -> None:
            with self.lock:
                self._current_request = {"id": None, "idempotency_key": None}
                action()

        timer = threading.Timer(delay_s, run)
        timer.daemon = True
        timer.start()

    def get(self, kind: str, object_id: str, name: str | None = None, param: str = "id") -> Json:
        obj = self.objects.get(kind, {}).get(object_id)
        if obj is None or obj.get("deleted"):
            raise missing(name or kind, object_id, param)
        return obj

    def all(self, kind: str) -> list[Json]:
        return [o for o in self.objects.get(kind, {}).values() if not o.get("deleted")]

    def find(self, object_id: str) -> Json | None:
        """Resolve any id (for expand)."""
        for kind in self.objects.values():
            if object_id in kind and not kind[object_id].get("deleted"):
                return kind[object_id]
        return None

    # --- time ----------------------------------------------------------------------
    def now_for(self, customer_id: str | None) -> int:
        if customer_id:
            customer = self.objects.get("customer", {}).get(customer_id)
            clock_id = customer.get("test_clock") if customer else None
            if clock_id and clock_id in self.objects.get("test_clock", {}):
                return int(self.objects["test_clock"][clock_id]["frozen_time"])
        return int(time.time())

    # --- events --------------------------------------------------------------------
    def emit(self, event_type: str, obj: Json, *, created: int, previous: Json | None = None) -> Json | None:
        if event_type in set(self.misbehave.get("suppress_events") or []):
            return None
        # A JSON round trip snapshots the object several times faster than deepcopy.
        # A snapshot; it is fitted to Stripe's catalogue when served or delivered.
        data: Json = {"object": json.loads(json.dumps(obj))}
        if event_type == "invoice.upcoming":
            data["object"].pop("id", None)  # Stripe: the upcoming invoice has no id
        if previous:
            data["previous_attributes"] = json.loads(json.dumps(previous))
        event = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": dict(self._current_request),
            "type": event_type,
            "_delivery_success": None,
        }
        self.events.append(event)
        self.put("event", event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def snapshot(self, obj: Json) -> Json:
        """The object's state now (for previous_attributes; private keys are ignored there)."""
        return json.loads(json.dumps(obj))  # type: ignore[no-any-return]

    def emit_update(self, event_type: str, obj: Json, before: Json, *, created: int,
                    always: bool = False) -> Json | None:
        """Emit `event_type` with previous_attributes holding exactly what changed since `before`;
        nothing at all for a no-op update (unless `always`, for events such as charge.refunded)."""
        previous = changed_fields(before, self.snapshot(obj))
        if not previous and not always:
            return None
        return self.emit(event_type, obj, created=created, previous=previous)

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
        return self.objects.get("payment_method", {}).get(pm_id) if pm_id else None

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

    # --- payments -------------------------------------------------------------------------
    def _new_payment_intent(self, customer_id: str | None, amount: int, currency: str, created: int,
                            description: str | None = None) -> Json:
        intent = {
            "id": new_id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "capture_method": "automatic",
            "client_secret": f"pi_secret_{secrets.token_hex(8)}",
            "confirmation_method": "automatic",
            "created": created,
            "currency": currency,
            "customer": customer_id,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": {},
            "next_action": None,
            "payment_method": None,
            "payment_method_types": ["card"],
            "status": "requires_payment_method",
            "_authenticated": False,
        }
        return self.put("payment_intent", intent)

    @staticmethod
    def test_card_of(pm: Json) -> test_cards.TestCard:
        found = test_cards.lookup(str(pm.get("_test_card") or "pm_card_visa"))
        return found[1] if found else test_cards.CARDS["pm_card_visa"]

    def attempt_payment(self, intent: Json, pm: Json | None, now: int) -> str:
        """Try to collect `intent` with `pm`: returns succeeded | failed | requires_action."""
        if pm is None:
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {"code": "payment_method_missing", "message": "No payment method."}
            return "failed"
        intent["payment_method"] = pm["id"]
        card = self.test_card_of(pm)
        behaviour = pm.get("_behaviour", "ok")
        decline = card.decline or test_cards.GENERIC
        if self.misbehave.get("dunning_never_recovers") and intent.get("_dunning"):
            behaviour, decline = "fail_later", test_cards.GENERIC
        needs_auth = behaviour in ("sca", "sca_then_decline") or (behaviour == "sca_on_setup"
                                                                   and not pm.get("_set_up"))
        if needs_auth and not intent.get("_authenticated"):
            intent["status"] = "requires_action"
            intent["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
            self.emit("payment_intent.requires_action", intent, created=now)
            return "requires_action"
        declined = behaviour in ("fail_later", "declined", "sca_then_decline", "blocked")
        charge = self._new_charge(intent, pm, now, succeeded=not declined,
                                  decline=decline if declined else None, blocked=behaviour == "blocked")
        if charge["status"] == "failed":
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "type": "card_error", "code": decline.code, "decline_code": decline.decline_code,
                "message": decline.message, "charge": charge["id"], "payment_method": public_copy(pm),
                "doc_url": f"https://docs.stripe.com/error-codes/{decline.code.replace('_', '-')}",
            }
            intent["_dunning"] = True
            self.emit("charge.failed", charge, created=now)
            self.emit("payment_intent.payment_failed", intent, created=now)
            return "failed"
        if intent.get("_authenticated"):
            pm["_set_up"] = True  # an authenticated payment sets the card up for later off-session use
        if not charge["captured"]:  # capture_method=manual: the funds are held until captured
            intent.update(status="requires_capture", amount_capturable=intent["amount"], next_action=None,
                          last_payment_error=None)
            self.emit("charge.succeeded", charge, created=now)
            self.emit("payment_intent.amount_capturable_updated", intent, created=now)
            return "requires_capture"
        intent["status"] = "succeeded"
        intent["amount_received"] = intent["amount"]
        intent["next_action"] = None
        intent["last_payment_error"] = None
        self.emit("charge.succeeded", charge, created=now)
        self.emit("payment_intent.succeeded", intent, created=now)
        if behaviour == "dispute":
            for _ in range(card.disputes):
                self.create_dispute_for(charge, now, reason=card.dispute_reason)
        if behaviour == "inquiry":
            self.create_dispute_for(charge, now, inquiry=True)
        if behaviour == "ce3":
            self.create_dispute_for(charge, now, ce3=True)
        if behaviour == "efw":
            self.create_efw_for(charge, now)
        return "succeeded"

    def _new_charge(self, intent: Json, pm: Json, now: int, *, succeeded: bool,
                    decline: test_cards.Decline | None = None, blocked: bool = False) -> Json:
        card = pm["card"]
        test_card = self.test_card_of(pm)
        three_d = {"result": "authenticated", "version": "2.2.0"} if intent.get("_authenticated") else None
        risk_score = {"elevated": 78, "highest": 95}.get(test_card.risk_level,
                                                         int(hashlib.sha256(intent["id"].encode()).hexdigest()[:2], 16)
                                                         % 60)
        decline = decline or test_cards.GENERIC
        if succeeded:
            outcome = {"network_status": "approved_by_network", "reason": None, "seller_message": "Payment complete.",
                       "type": "authorized"}
        elif blocked:
            outcome = {"network_status": "not_sent_to_network", "reason": "highest_risk_level",
                       "seller_message": "Stripe blocked this payment as too risky.", "type": "blocked"}
        else:
            outcome = {"network_status": "declined_by_network", "reason": decline.decline_code,
                       "seller_message": "The bank did not return any further details with this decline.",
                       "type": "issuer_declined"}
        captured = succeeded and intent.get("capture_method") != "manual"  # manual: authorized, captured later
        charge = {
            "id": new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if captured else 0,
            "amount_refunded": 0,
            "balance_transaction": new_id("txn") if captured else None,
            "billing_details": pm.get("billing_details"),
            "captured": captured,
            "created": now,
            "currency": intent["currency"],
            "customer": intent.get("customer"),
            "description": intent.get("description"),
            "disputed": False,
            "failure_code": None if succeeded else decline.code,
            "failure_message": None if succeeded else decline.message,
            "fraud_details": {},
            "livemode": False,
            "metadata": {},
            "outcome": {**outcome, "risk_level": test_card.risk_level if test_card.risk_level != "normal" else
                        ("elevated" if risk_score >= 65 else "normal"), "risk_score": risk_score},
            "paid": succeeded,
            "payment_intent": intent["id"],
            "payment_method": pm["id"],
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": card["brand"],
                    "country": card["country"],
                    "exp_month": card["exp_month"],
                    "exp_year": card["exp_year"],
                    "fingerprint": card["fingerprint"],
                    "funding": card["funding"],
                    "last4": card["last4"],
                    "network": card["brand"],
                    "three_d_secure": three_d,
                    "checks": dict(card.get("checks") or {"cvc_check": "pass", "address_postal_code_check": None,
                                                          "address_line1_check": None}),
                },
            },
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "url": "/v1/refunds"},
            "status": "succeeded" if succeeded else "failed",
        }
        intent["latest_charge"] = charge["id"]
        return self.put("charge", charge)

    def create_payment_intent(self, params: Json) -> Json:
        amount = to_int(params.get("amount"), "amount", minimum=50)
        customer_id = params.get("customer")
        if customer_id:
            self.get("customer", customer_id, "customer", "customer")
        now = self.now_for(customer_id)
        intent = self._new_payment_intent(customer_id, amount, str(params.get("currency", "usd")).lower(), now,
                                          params.get("description"))
        self._merge_metadata(intent, params.get("metadata") or {})
        pm_id = params.get("payment_method")
        if pm_id:
            intent["payment_method"] = self._resolve_pm(pm_id, customer_id)["id"] if test_cards.is_test_card(pm_id) \
                else self.get("payment_method", pm_id, "PaymentMethod")["id"]
            intent["status"] = "requires_confirmation"
        self.emit("payment_intent.created", intent, created=now)
        if to_bool(params.get("confirm", False), "confirm"):
            self.confirm_payment_intent(intent["id"], {})
        return intent

    def confirm_payment_intent(self, intent_id: str, params: Json) -> Json:
        intent = self.get("payment_intent", intent_id, "payment_intent")
        if intent["status"] == "succeeded":
            raise StripeApiError(
                400, "This PaymentIntent's payment has already succeeded.", code="payment_intent_unexpected_state"
            )
        now = self.now_for(intent.get("customer"))
        pm_id = params.get("payment_method") or intent.get("payment_method")
        pm = self._resolve_pm(pm_id, intent.get("customer")) if pm_id else None
        if pm is not None and pm.get("_behaviour") not in ("sca", "sca_on_setup", "sca_then_decline"):
            intent["_authenticated"] = False
        outcome = self.attempt_payment(intent, pm, now)
        self._after_intent_outcome(intent, outcome, now)
        if outcome == "failed" and pm is not None:
            raise self.card_error(intent, pm)
        return intent

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

    def authenticate_payment_intent(self, intent_id: str) -> Json:
        """What the customer's 3-D Secure challenge does in a browser (emulator helper)."""
        intent = self.get("payment_intent", intent_id, "payment_intent")
        if self.misbehave.get("sca_never_completes"):
            return intent
        if intent["status"] != "requires_action":
            raise StripeApiError(400, "This PaymentIntent does not require action.",
                                 code="payment_intent_unexpected_state")
        intent["_authenticated"] = True
        now = self.now_for(intent.get("customer"))
        pm = self.objects["payment_method"].get(intent["payment_method"])
        outcome = self.attempt_payment(intent, pm, now)
        self._after_intent_outcome(intent, outcome, now)
        return intent

    def _after_intent_outcome(self, intent: Json, outcome: str, now: int) -> None:
        invoice_id = intent.get("_invoice")
        if invoice_id:
            self._settle_invoice(self.objects["invoice"][invoice_id], intent, outcome, now)

    def update_charge(self, charge_id: str, params: Json) -> Json:
        """POST /v1/charges/{id}: metadata, description and shipping; emits charge.updated."""
        charge = self.get("charge", charge_id, "charge")
        previous: Json = {"metadata": dict(charge.get("metadata") or {})} if "metadata" in params else {}
        if "metadata" in params:
            self._merge_metadata(charge, params["metadata"])
        for name in ("description", "shipping"):
            if name in params:
                previous[name] = charge.get(name)
                charge[name] = params[name] or None
        self.emit("charge.updated", charge, created=self.now_for(charge.get("customer")), previous=previous)
        return charge

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

    def create_dispute_for(self, charge: Json, now: int, *, inquiry: bool = False, reason: str = "fraudulent",
                           due_in_days: float = DISPUTE_RESPONSE_DAYS, ce3: bool = False) -> Json:
        card = (charge.get("payment_method_details") or {}).get("card") or {}
        reason_code = "10.4" if ce3 else None
        dispute = {
            "id": new_id("dp"),
            "object": "dispute",
            "amount": charge["amount"],
            "balance_transactions": [],
            "charge": charge["id"],
            "created": now,
            "currency": charge["currency"],
            "enhanced_eligibility_types": ["visa_compelling_evidence_3"] if ce3 else [],
            "evidence": {**{field: None for field in sorted(EVIDENCE_TEXT_FIELDS | EVIDENCE_FILE_FIELDS)},
                         "enhanced_evidence": {"visa_compelling_evidence_3": {
                             "disputed_transaction": None, "prior_undisputed_transactions": []}} if ce3 else {}},
            "evidence_details": {
                "due_by": int(now + due_in_days * DAY),
                "enhanced_eligibility": {"visa_compelling_evidence_3": ce3_eligibility({})} if ce3 else {},
                "has_evidence": False,
                "submission_method": "not_submitted",
                "past_due": False,
                "submission_count": 0,
            },
            "is_charge_refundable": False,
            "livemode": False,
            "metadata": {},
            "network_reason_code": reason_code,
            "payment_intent": charge.get("payment_intent"),
            "payment_method_details": {"type": "card", "card": {
                "brand": card.get("brand") or "visa", "case_type": "inquiry" if inquiry else "chargeback",
                "network": card.get("network") or card.get("brand") or "visa", "network_reason_code": reason_code}},
            "reason": "general" if inquiry else reason,
            "status": "warning_needs_response" if inquiry else "needs_response",
        }
        self.put("dispute", dispute)
        charge["disputed"] = True
        self.emit("charge.dispute.created", dispute, created=now)
        if not inquiry:
            # Stripe debits the disputed amount plus its dispute fee (a "Dispute fee" stripe_fee line).
            dispute["balance_transactions"] = [self._balance_transaction(
                -charge["amount"], charge["currency"], now, dispute["id"], "Chargeback withdrawal", fee=DISPUTE_FEE)]
            self.emit("charge.dispute.funds_withdrawn", dispute, created=now)
        self._efw_no_longer_actionable(charge["id"], now)
        return dispute

    def update_dispute(self, dispute_id: str, params: Json) -> Json:
        dispute = self.get("dispute", dispute_id, "dispute")
        now = self.now_for(self.objects["charge"][dispute["charge"]].get("customer"))
        evidence = params.get("evidence") or {}
        if evidence == "":
            evidence = {}
        if not isinstance(evidence, dict):
            raise StripeApiError(400, "Invalid hash", code="parameter_invalid_empty", param="evidence")
        evidence = dict(evidence)
        enhanced = evidence.pop("enhanced_evidence", None)
        for field in evidence:
            if field not in EVIDENCE_TEXT_FIELDS | EVIDENCE_FILE_FIELDS:
                raise StripeApiError(400, f"Received unknown parameter: evidence[{field}]",
                                     code="parameter_unknown", param=f"evidence[{field}]")
        if dispute["status"] not in ("needs_response", "warning_needs_response"):
            raise StripeApiError(
                400, "This dispute is already closed or its evidence was already submitted; "
                     "evidence can no longer be updated.", code="dispute_already_submitted" if dispute["status"]
                == "under_review" else "dispute_closed")
        if now > dispute["evidence_details"]["due_by"]:
            dispute["evidence_details"]["past_due"] = True
            raise StripeApiError(400, "The deadline to respond to this dispute has passed.", code="dispute_past_due")
        for field, value in evidence.items():
            if field in EVIDENCE_FILE_FIELDS and value:
                file = self.get("file", value, "file", f"evidence[{field}]")
                if file["purpose"] != "dispute_evidence":
                    raise StripeApiError(400, f"The file {value} has purpose {file['purpose']}; "
                                              "dispute evidence needs purpose dispute_evidence.",
                                         param=f"evidence[{field}]")
        merged = {**dispute["evidence"], **{k: (v or None) for k, v in evidence.items()}}
        text = sum(len(str(merged[f] or "")) for f in EVIDENCE_TEXT_FIELDS)
        if text > EVIDENCE_TEXT_LIMIT:
            raise StripeApiError(400, "The combined length of the evidence text fields exceeds 150000 characters.",
                                 param="evidence")
        ce3 = _merge_ce3(dispute, enhanced)
        before = self.snapshot(dispute)
        if ce3 is not None:
            merged["enhanced_evidence"] = {**(merged.get("enhanced_evidence") or {}), "visa_compelling_evidence_3": ce3}
        dispute["evidence"] = merged
        dispute["evidence_details"]["has_evidence"] = any(v for v in merged.values())
        if "metadata" in params:
            self._merge_metadata(dispute, params["metadata"])
        submit = to_bool(params.get("submit", True), "submit")  # Stripe submits unless submit=false
        eligibility = dispute["evidence_details"].get("enhanced_eligibility") or {}
        if "visa_compelling_evidence_3" in eligibility:
            state = ce3_eligibility(merged["enhanced_evidence"].get("visa_compelling_evidence_3") or {})
            if submit:  # after submission: qualified, or not_qualified (submitted without CE 3.0)
                state = {"required_actions": [], "status": "qualified" if state["status"] == "qualified"
                         else "not_qualified"}
            eligibility["visa_compelling_evidence_3"] = state
        if submit:
            dispute["evidence_details"]["submission_count"] += 1
            dispute["evidence_details"]["submission_method"] = "manual"
            dispute["status"] = "under_review" if dispute["status"] == "needs_response" else "warning_under_review"
        self.emit_update("charge.dispute.updated", dispute, before, created=now)
        if submit:
            all_text = " ".join(str(v) for v in merged.values() if v)
            # Stripe decides test-mode disputes shortly after submission, by the evidence text.
            customer_id = self.objects["charge"][dispute["charge"]].get("customer")
            if "winning_evidence" in all_text:
                self.later(0.2, lambda: self._close_dispute(dispute, "won", self.now_for(customer_id)))
            elif "losing_evidence" in all_text:
                self.later(0.2, lambda: self._close_dispute(dispute, "lost", self.now_for(customer_id)))
            elif "escalate_inquiry_evidence" in all_text and dispute["status"] == "warning_under_review":
                self.later(0.2, lambda: self._escalate_inquiry(dispute, self.now_for(customer_id)))
        return dispute

    def escalate_inquiry(self, dispute_id: str, now: int) -> Json:
        """Test helper (/_emulator/disputes/{id}/escalate): the cardholder's bank turns an inquiry into a
        chargeback. The same dispute moves to needs_response with a new deadline (charge.dispute.updated
        with the previous status) and the funds are withdrawn with the dispute fee."""
        dispute = self.get("dispute", dispute_id, "dispute")
        if dispute["status"] not in ("warning_needs_response", "warning_under_review"):
            raise StripeApiError(400, "Only an open inquiry can become a chargeback.", code="dispute_closed")
        self._escalate_inquiry(dispute, now)
        return dispute

    def _escalate_inquiry(self, dispute: Json, now: int) -> None:
        """The inquiry becomes a chargeback (the helper above, or test mode's `escalate_inquiry_evidence`)."""
        before = self.snapshot(dispute)
        dispute["status"] = "needs_response"
        dispute["evidence_details"]["due_by"] = int(now + DISPUTE_RESPONSE_DAYS * DAY)
        dispute["evidence_details"]["submission_count"] = 0
        dispute["payment_method_details"]["card"]["case_type"] = "chargeback"
        dispute["balance_transactions"] = [self._balance_transaction(
            -dispute["amount"], dispute["currency"], now, dispute["id"], "Chargeback withdrawal", fee=DISPUTE_FEE)]
        self.emit_update("charge.dispute.updated", dispute, before, created=now)
        self.emit("charge.dispute.funds_withdrawn", dispute, created=now)

    def close_dispute(self, dispute_id: str) -> Json:
        dispute = self.get("dispute", dispute_id, "dispute")
        if dispute["status"] not in ("needs_response", "warning_needs_response"):
            raise StripeApiError(400, "This dispute is already closed or under review and cannot be closed.",
                                 code="dispute_closed" if dispute["status"] in ("won", "lost") else
                                 "dispute_already_submitted")
        now = self.now_for(self.objects["charge"][dispute["charge"]].get("customer"))
        self._close_dispute(dispute, "lost" if dispute["status"] == "needs_response" else "warning_closed", now)
        return dispute

    def _close_dispute(self, dispute: Json, status: str, now: int) -> None:
        before = self.snapshot(dispute)
        dispute["status"] = status
        self.emit_update("charge.dispute.closed", dispute, before, created=now, always=True)
        if status == "won":
            dispute["balance_transactions"].append(self._balance_transaction(
                dispute["amount"], dispute["currency"], now, dispute["id"], "Chargeback reversal"))
            self.emit("charge.dispute.funds_reinstated", dispute, created=now)

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

    def create_efw_for(self, charge: Json, now: int, fraud_type: str = "made_with_stolen_card") -> Json:
        efw = {
            "id": new_id("issfr"),
            "object": "radar.early_fraud_warning",
            "actionable": not charge["disputed"] and not charge["refunded"],
            "charge": charge["id"],
            "created": now,
            "fraud_type": fraud_type,
            "livemode": False,
            "payment_intent": charge.get("payment_intent"),
        }
        self.put("radar.early_fraud_warning", efw)
        self.emit("radar.early_fraud_warning.created", efw, created=now)
        return efw

    def _efw_no_longer_actionable(self, charge_id: str, now: int) -> None:
        for efw in self.all("radar.early_fraud_warning"):
            if efw["charge"] == charge_id and efw["actionable"]:
                before = self.snapshot(efw)
                efw["actionable"] = False
                self.emit_update("radar.early_fraud_warning.updated", efw, before, created=now)

    # --- files --------------------------------------------------------------------------
    def create_file(self, content: bytes, filename: str, purpose: str) -> Json:
        purposes = {"dispute_evidence", "identity_document", "business_logo", "customer_signature",
                    "additional_verification", "tax_document_user_upload", "business_icon"}
        if purpose not in purposes:
            raise StripeApiError(400, f"Invalid purpose: {purpose}", code="parameter_invalid_string", param="purpose")
        file_type = sniff_file_type(content)
        if purpose == "dispute_evidence":
            if len(content) > FILE_MAX_BYTES:
                raise StripeApiError(400, "File size must be less than 5MB for purpose dispute_evidence.",
                                     code="parameter_invalid_string", param="file")
            if file_type not in ("pdf", "jpg", "png"):
                raise StripeApiError(
                    400, "Invalid file type for purpose dispute_evidence: must be one of pdf, jpg or png.",
                    code="parameter_invalid_string", param="file",
                )
        file = {
            "id": new_id("file"),
            "object": "file",
            "created": int(time.time()),
            "expires_at": None,
            "filename": filename,
            "purpose": purpose,
            "size": len(content),
            "title": None,
            "type": file_type,
            "url": f"https://files.stripe.com/v1/files/{filename}/contents",
            "_content_sha256": hashlib.sha256(content).hexdigest(),
        }
        return self.put("file", file)

    # --- subscriptions and invoices ----------------------------------------------------------
    def _price(self, price_id: str, param: str) -> Json:
        price = self.get("price", price_id, "price", param)
        if not price.get("recurring"):
            raise StripeApiError(400, "The price specified is set to `type=one_time` but this field only accepts "
                                      "prices with `type=recurring`.", param=param)
        return price

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
            apply_params(self, subscription, params, now)
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
                     finalize: bool = True) -> Json:
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
            "auto_advance": True,
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
            adjust(self, invoice, subscription, now)
        self.put("invoice", invoice)
        self.invoices_by_subscription.setdefault(subscription["id"], []).append(invoice_id)
        subscription["latest_invoice"] = invoice_id
        if not finalize:
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
            if subscription is not None and subscription["status"] in ("incomplete", "past_due", "unpaid"):
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
            lines_changed(self, invoice)
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
            apply_params(self, subscription, params, now)
        # The subscription's update comes first; the proration invoice's events follow it.
        self.emit_update("customer.subscription.updated", subscription, before, created=now)
        if proration_lines:
            if proration_behavior == "always_invoice":
                invoice = self._invoice_for(subscription, "subscription_update", proration_lines, now)
                self._collect(invoice, subscription, now)
            else:
                self.pending_prorations.setdefault(subscription_id, []).extend(proration_lines)
        return subscription

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

    # --- the passage of time ---------------------------------------------------------------
    def advance_subscription(self, subscription: Json, until: int) -> None:
        """Run the subscription's due work up to `until`, in time order: incomplete expiry,
        invoice.upcoming, renewals (a draft at period end), draft finalization and payment
        about an hour later, payment retries and period-end cancellations."""
        for _ in range(5000):  # bounded: years of daily prices at most
            work = self._next_work(subscription, until)
            if work is None:
                return
            at, _order, kind, invoice = work
            if kind == "expire":
                self._expire_incomplete(subscription, at)
            elif kind == "finalize" and invoice is not None:
                self.finalize_invoice(invoice, at)
                if invoice["status"] == "open":
                    self._collect(invoice, subscription, at)
            elif kind == "retry" and invoice is not None:
                self._collect(invoice, subscription, at)
            elif kind == "upcoming":
                self._send_upcoming(subscription, at)
            elif kind == "renew":
                self._renew(subscription, at)
            elif kind == "work":
                for work_item in SUBSCRIPTION_WORK:
                    if work_item.due(self, subscription, at) == at:
                        work_item.run(self, subscription, at)

    def _next_work(self, subscription: Json, until: int) -> tuple[int, int, str, Json | None] | None:
        status = subscription["status"]
        if status in ("canceled", "incomplete_expired"):
            return None
        due: list[tuple[int, int, str, Json | None]] = []
        if status == "incomplete":
            expires = int(subscription["created"]) + billing_calendar.INCOMPLETE_EXPIRES_SECONDS
            return (expires, 0, "expire", None) if expires <= until else None
        invoices = self.objects.get("invoice", {})
        for invoice_id in self.invoices_by_subscription.get(subscription["id"], []):
            invoice = invoices[invoice_id]
            finalizes = invoice.get("automatically_finalizes_at")
            if invoice["status"] == "draft" and finalizes and finalizes <= until:
                due.append((int(finalizes), 1, "finalize", invoice))
            retry = invoice.get("next_payment_attempt")
            if invoice["status"] == "open" and retry and retry <= until:
                due.append((int(retry), 2, "retry", invoice))
        item = subscription["items"]["data"][0]
        period_end = int(item["current_period_end"])
        notice = int(self.billing_config.get("upcoming_days", billing_calendar.DEFAULT_UPCOMING_DAYS)) * DAY
        upcoming_at = period_end - notice
        if (notice > 0 and not subscription["cancel_at_period_end"] and upcoming_at <= until
                and upcoming_at > item["current_period_start"] and subscription.get("_upcoming_for") != period_end):
            due.append((upcoming_at, 3, "upcoming", None))
        if period_end <= until:
            due.append((period_end, 4, "renew", None))
        for work_item in SUBSCRIPTION_WORK:
            work_at = work_item.due(self, subscription, until)
            if work_at is not None and work_at <= until:
                due.append((work_at, 0, "work", None))
        return min(due, key=lambda work: (work[0], work[1])) if due else None

    def _renew(self, subscription: Json, period_end: int) -> None:
        if subscription["cancel_at_period_end"]:
            self.cancel_subscription(subscription["id"], at=period_end)
            return
        before = self.snapshot(subscription)
        anchor = int(subscription["billing_cycle_anchor"])
        for each in subscription["items"]["data"]:
            each["current_period_start"] = period_end
            each["current_period_end"] = self.period_end(each["price"], anchor, period_end)
        self.emit_update("customer.subscription.updated", subscription, before, created=period_end)
        lines = self.pending_prorations.pop(subscription["id"], []) + self._item_lines(subscription, period_end)
        self._invoice_for(subscription, "subscription_cycle", lines, period_end, finalize=False)

    def _send_upcoming(self, subscription: Json, at: int) -> None:
        """invoice.upcoming, the configured number of days before renewal (its invoice has no id)."""
        subscription["_upcoming_for"] = subscription["items"]["data"][0]["current_period_end"]
        preview = self.preview_invoice({"subscription": subscription["id"]})
        preview["created"] = at
        self.emit("invoice.upcoming", preview, created=at)

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

    def advance_clock(self, clock_id: str, frozen_time: int) -> Json:
        clock = self.get("test_clock", clock_id, "test_helpers.test_clock")
        if frozen_time <= clock["frozen_time"]:
            raise StripeApiError(400, "The test clock can only be advanced forward in time.",
                                 code="parameter_invalid_integer", param="frozen_time")
        clock["status"] = "advancing"
        for clock_work in CLOCK_WORK:
            clock_work(self, clock_id, frozen_time)
        customers = {c["id"] for c in self.all("customer") if c.get("test_clock") == clock_id}
        subscriptions = [s for s in self.all("subscription") if s["customer"] in customers]
        # Step through each subscription's due work in time order (renewals, retries, period ends).
        clock["frozen_time"] = frozen_time
        # What the clock's advance sets off is Stripe's own (automatic) work: its events have no request.
        request, self._current_request = self._current_request, {"id": None, "idempotency_key": None}
        try:
            for subscription in sorted(subscriptions, key=lambda s: s["created"]):
                self.advance_subscription(subscription, frozen_time)
        finally:
            self._current_request = request
        clock["status"] = "ready"
        self.emit("test_helpers.test_clock.ready", clock, created=frozen_time)
        return clock

    def tick_realtime(self) -> None:
        """Subscriptions not on a test clock live in real time (renewals, cancellations)."""
        now = int(time.time())
        for subscription in self.all("subscription"):
            if subscription.get("test_clock"):
                continue
            self.advance_subscription(subscription, now)


def sniff_file_type(content: bytes) -> str:
    """Decide a file's type by its magic bytes, never by its name."""
    if content.startswith(b"%PDF-"):
        return "pdf"
    if content.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    return "unknown"
