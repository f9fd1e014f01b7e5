"""The only module that talks to Stripe.

Everything goes through `StripeGateway._call`, which applies, in order: a
client-side rate limit under 80 % of the mode's limit, retries of 429/5xx and
connection errors with jittered exponential backoff, and translation of
Stripe's errors into `StripeGatewayError` whose message is plain words and
never contains a key. Mutating calls take an idempotency key derived from the
intent by the caller (e.g. `refund:efw:<id>`); retries reuse it, so a retried
POST can never act twice. Results are plain dicts, so services never see SDK
types. List reads paginate with limit=100; search endpoints are never used
(they are eventually consistent, unfit for read-after-write).
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import IO, Any, TypeVar

import orjson
import stripe
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from services.config import Settings
from services.gateway_policy import (
    ErrorFacts,
    GatewayStats,
    RateLimiter,
    StripeGatewayError,
    backoff_seconds,
    gateway_error,
    shared_rate_limiter,
)

# Callers import the error, the limiter and the stats from here, beside the gateway they belong to.
__all__ = ["PINNED_API_VERSION", "GatewayStats", "RateLimiter", "StripeGateway", "StripeGatewayError",
           "translate_error"]

# The API version the installed SDK pins (stripe 16.1: 2026-10-28.endive). The
# emulator answers in it; basil-era shapes (periods on items, invoice.parent).
PINNED_API_VERSION: str = stripe.api_version
LIST_PAGE_SIZE = 100

T = TypeVar("T")


def _facts(error: stripe.StripeError) -> ErrorFacts:
    if isinstance(error, stripe.AuthenticationError):
        kind = "authentication"
    elif isinstance(error, stripe.APIConnectionError):
        kind = "connection"
    elif isinstance(error, stripe.RateLimitError):
        kind = "rate_limit"
    else:
        kind = "other"
    return ErrorFacts(kind=kind, code=getattr(error, "code", None), http_status=error.http_status,
                      request_id=error.request_id, param=getattr(error, "param", None),
                      user_message=error.user_message, raw_message=str(getattr(error, "_message", "") or "") or None,
                      class_name=error.__class__.__name__)


def _is_retryable(error: BaseException) -> bool:
    if not isinstance(error, stripe.StripeError):
        return False
    return _facts(error).retryable


def translate_error(error: stripe.StripeError) -> StripeGatewayError:
    return gateway_error(_facts(error))


def _wire_values(value: Any) -> Any:
    """The SDK parses decimal_string fields (e.g. unit_amount_decimal) into Decimal;
    give them back as the wire's strings so results stay JSON-safe (stored raw payloads)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _wire_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire_values(v) for v in value]
    return value


def _to_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, stripe.StripeObject):
        result: dict[str, Any] = _wire_values(obj.to_dict())
        return result
    return dict(obj)


class StripeGateway:
    """Typed access to the Stripe calls the console makes."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: stripe.StripeClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
        record_request_times: bool = False,
    ) -> None:
        key = settings.stripe_secret
        if client is None and not key:
            raise StripeGatewayError("No Stripe API key is configured (set STRIPE_API_KEY).", code="no_key")
        self.mode = settings.stripe_mode
        self.max_retries = settings.stripe_max_retries
        self._sleep = sleep
        self.stats = GatewayStats()
        self._record_times = record_request_times
        self.limiter = shared_rate_limiter(
            f"{settings.stripe_mode}:{settings.stripe_api_base or 'stripe'}", settings.stripe_requests_per_second
        )
        if client is None:
            base = settings.stripe_api_base
            addresses: dict[str, str] = (
                {"api": base, "files": base, "connect": base, "meter_events": base} if base else {}
            )
            client = stripe.StripeClient(
                key or "",
                stripe_version=PINNED_API_VERSION,
                base_addresses=addresses,  # type: ignore[arg-type]
                # Retries are ours (below), so the SDK must not add its own on top.
                max_network_retries=0,
                http_client=stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds, allow_sync_methods=True),
            )
        self.client = client

    # --- the one choke point ------------------------------------------------
    def _call(self, operation: Callable[[], T], *, is_list: bool = False) -> T:
        def wait(state: RetryCallState) -> float:
            return backoff_seconds(state.attempt_number)

        def attempt() -> T:
            self.stats.throttled_seconds += self.limiter.acquire()
            self.stats.requests += 1
            if is_list:
                self.stats.list_calls += 1
            if self._record_times:
                self.stats.request_times.append(time.monotonic())
            return operation()

        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait,
            retry=retry_if_exception(_is_retryable),
            sleep=self._sleep,
            before_sleep=lambda _state: setattr(self.stats, "retries", self.stats.retries + 1),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except stripe.StripeError as error:
            raise translate_error(error) from None

    @staticmethod
    def _options(idempotency_key: str | None) -> dict[str, Any]:
        return {"idempotency_key": idempotency_key} if idempotency_key else {}

    def _paginate(self, list_page: Callable[[dict[str, Any]], Any], params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        query = {**params, "limit": LIST_PAGE_SIZE}
        while True:
            page = self._call(functools.partial(list_page, dict(query)), is_list=True)
            items = [_to_dict(item) for item in page.data]
            yield from items
            if not page.has_more or not items:
                return
            query["starting_after"] = items[-1]["id"]

    # --- account / health ---------------------------------------------------
    def ping(self) -> dict[str, Any]:
        """A cheap authenticated read: proves the key works and Stripe is reachable."""
        return _to_dict(self._call(lambda: self.client.v1.balance.retrieve()))

    # --- customers, products, prices ------------------------------------------
    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.customers.retrieve(customer_id)))

    def create_customer(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(lambda: self.client.v1.customers.create(params, self._options(idempotency_key)))  # type: ignore[arg-type]
        )

    def list_customers(self, **params: Any) -> Iterator[dict[str, Any]]:
        return self._paginate(lambda q: self.client.v1.customers.list(q), params)  # type: ignore[arg-type]

    def retrieve_price(self, price_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.prices.retrieve(price_id, {"expand": ["product"]})))

    def list_prices(self, **params: Any) -> Iterator[dict[str, Any]]:
        return self._paginate(lambda q: self.client.v1.prices.list(q), params)  # type: ignore[arg-type]

    def attach_payment_method(self, payment_method: str, customer_id: str, *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(
                lambda: self.client.v1.payment_methods.attach(
                    payment_method, {"customer": customer_id}, self._options(idempotency_key)  # type: ignore[arg-type]
                )
            )
        )

    def update_customer(self, customer_id: str, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(
                lambda: self.client.v1.customers.update(customer_id, params, self._options(idempotency_key))  # type: ignore[arg-type]
            )
        )

    # --- subscriptions ------------------------------------------------------------
    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.subscriptions.retrieve(subscription_id)))

    def list_subscriptions(self, **params: Any) -> Iterator[dict[str, Any]]:
        params.setdefault("status", "all")
        return self._paginate(lambda q: self.client.v1.subscriptions.list(q), params)  # type: ignore[arg-type]

    def create_subscription(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(lambda: self.client.v1.subscriptions.create(params, self._options(idempotency_key)))  # type: ignore[arg-type]
        )

    def update_subscription(
        self, subscription_id: str, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        return _to_dict(
            self._call(
                lambda: self.client.v1.subscriptions.update(
                    subscription_id, params, self._options(idempotency_key)  # type: ignore[arg-type]
                )
            )
        )

    def cancel_subscription(self, subscription_id: str, *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(
                lambda: self.client.v1.subscriptions.cancel(subscription_id, None, self._options(idempotency_key))  # type: ignore[arg-type]
            )
        )

    def preview_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        """invoices/create_preview (the upcoming-invoice API was removed in basil)."""
        return _to_dict(self._call(lambda: self.client.v1.invoices.create_preview(params)))  # type: ignore[arg-type]

    # --- invoices, charges, refunds -----------------------------------------------
    def retrieve_invoice(self, invoice_id: str, *, expand: list[str] | None = None) -> dict[str, Any]:
        params = {"expand": expand} if expand else {}
        return _to_dict(self._call(lambda: self.client.v1.invoices.retrieve(invoice_id, params)))  # type: ignore[arg-type]

    def list_invoices(self, **params: Any) -> Iterator[dict[str, Any]]:
        return self._paginate(lambda q: self.client.v1.invoices.list(q), params)  # type: ignore[arg-type]

    def pay_invoice(self, invoice_id: str, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(
                lambda: self.client.v1.invoices.pay(invoice_id, params, self._options(idempotency_key))  # type: ignore[arg-type]
            )
        )

    def retrieve_charge(self, charge_id: str, *, expand: list[str] | None = None) -> dict[str, Any]:
        params = {"expand": expand} if expand else {}
        return _to_dict(self._call(lambda: self.client.v1.charges.retrieve(charge_id, params)))  # type: ignore[arg-type]

    def list_charges(self, **params: Any) -> Iterator[dict[str, Any]]:
        return self._paginate(lambda q: self.client.v1.charges.list(q), params)  # type: ignore[arg-type]

    def retrieve_payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.payment_intents.retrieve(payment_intent_id)))

    def create_payment_intent(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(lambda: self.client.v1.payment_intents.create(params, self._options(idempotency_key)))  # type: ignore[arg-type]
        )

    def confirm_payment_intent(
        self, payment_intent_id: str, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        return _to_dict(
            self._call(
                lambda: self.client.v1.payment_intents.confirm(
                    payment_intent_id, params, self._options(idempotency_key)  # type: ignore[arg-type]
                )
            )
        )

    def create_refund(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(lambda: self.client.v1.refunds.create(params, self._options(idempotency_key)))  # type: ignore[arg-type]
        )

    # --- disputes and files -------------------------------------------------------
    def retrieve_dispute(self, dispute_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.disputes.retrieve(dispute_id)))

    def list_disputes(self, **params: Any) -> Iterator[dict[str, Any]]:
        return self._paginate(lambda q: self.client.v1.disputes.list(q), params)  # type: ignore[arg-type]

    def update_dispute(self, dispute_id: str, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(
                lambda: self.client.v1.disputes.update(dispute_id, params, self._options(idempotency_key))  # type: ignore[arg-type]
            )
        )

    def close_dispute(self, dispute_id: str, *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(
                lambda: self.client.v1.disputes.close(dispute_id, None, self._options(idempotency_key))  # type: ignore[arg-type]
            )
        )

    def upload_file(
        self, content: IO[bytes], *, filename: str, purpose: str, idempotency_key: str
    ) -> dict[str, Any]:
        def create() -> Any:
            content.seek(0)
            # The SDK sends any object with read() as a multipart file part named after `.name`.
            upload = io.BytesIO(content.read())
            upload.name = filename
            return self.client.v1.files.create(
                {"file": upload, "purpose": purpose},
                self._options(idempotency_key),  # type: ignore[arg-type]
            )

        return _to_dict(self._call(create))

    # --- radar early fraud warnings ----------------------------------------------
    def retrieve_early_fraud_warning(self, efw_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.radar.early_fraud_warnings.retrieve(efw_id)))

    def list_early_fraud_warnings(self, **params: Any) -> Iterator[dict[str, Any]]:
        return self._paginate(lambda q: self.client.v1.radar.early_fraud_warnings.list(q), params)  # type: ignore[arg-type]

    # --- radar value lists (block lists) -------------------------------------------
    def list_value_lists(self, **params: Any) -> Iterator[dict[str, Any]]:
        """`alias=` finds one list by its rule name; `contains=` the lists holding a value."""
        return self._paginate(lambda q: self.client.v1.radar.value_lists.list(q), params)  # type: ignore[arg-type]

    def create_value_list(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(lambda: self.client.v1.radar.value_lists.create(params, self._options(idempotency_key)))  # type: ignore[arg-type]
        )

    def list_value_list_items(self, value_list: str, **params: Any) -> Iterator[dict[str, Any]]:
        return self._paginate(
            lambda q: self.client.v1.radar.value_list_items.list(q),  # type: ignore[arg-type]
            {**params, "value_list": value_list},
        )

    def create_value_list_item(self, value_list: str, value: str, *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(
                lambda: self.client.v1.radar.value_list_items.create(
                    {"value_list": value_list, "value": value}, self._options(idempotency_key)  # type: ignore[arg-type]
                )
            )
        )

    def delete_value_list_item(self, item_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.radar.value_list_items.delete(item_id)))

    def retrieve_refund(self, refund_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.refunds.retrieve(refund_id)))

    def list_refunds(self, **params: Any) -> Iterator[dict[str, Any]]:
        return self._paginate(lambda q: self.client.v1.refunds.list(q), params)  # type: ignore[arg-type]

    # --- events and webhook endpoints ---------------------------------------------
    def retrieve_event(self, event_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.events.retrieve(event_id)))

    def list_events(self, **params: Any) -> Iterator[dict[str, Any]]:
        return self._paginate(lambda q: self.client.v1.events.list(q), params)  # type: ignore[arg-type]

    def list_events_page(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """One page of GET /v1/events (`limit`, `created`, `starting_after`) as plain dicts and
        `has_more`. The backfill reads thousands of events: parsing the body once with orjson
        instead of building SDK objects and converting them back is what keeps it under the
        request budget rather than CPU-bound (same choke point: rate limit, retries, errors)."""
        query = {"limit": LIST_PAGE_SIZE, **params}
        response = self._call(lambda: self.client.raw_request("get", "/v1/events", **query), is_list=True)
        page = orjson.loads(response.body)
        return list(page["data"]), bool(page["has_more"])

    def list_webhook_endpoints(self) -> list[dict[str, Any]]:
        return list(self._paginate(lambda q: self.client.v1.webhook_endpoints.list(q), {}))  # type: ignore[arg-type]

    def create_webhook_endpoint(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(lambda: self.client.v1.webhook_endpoints.create(params, self._options(idempotency_key)))  # type: ignore[arg-type]
        )

    def delete_webhook_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.webhook_endpoints.delete(endpoint_id)))

    # --- tax settings and payment method domains (read-only, for the preflight) -----------
    def retrieve_tax_settings(self) -> dict[str, Any]:
        """GET /v1/tax/settings: `status` is active or pending (head office missing)."""
        return _to_dict(self._call(lambda: self.client.v1.tax.settings.retrieve()))

    def list_payment_method_domains(self, **params: Any) -> list[dict[str, Any]]:
        return list(self._paginate(lambda q: self.client.v1.payment_method_domains.list(q), params))  # type: ignore[arg-type]

    # --- billing portal, checkout, test clocks ------------------------------------
    def list_portal_configurations(self) -> list[dict[str, Any]]:
        return list(
            self._paginate(lambda q: self.client.v1.billing_portal.configurations.list(q), {})  # type: ignore[arg-type]
        )

    def create_checkout_session(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(lambda: self.client.v1.checkout.sessions.create(params, self._options(idempotency_key)))  # type: ignore[arg-type]
        )

    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.checkout.sessions.retrieve(session_id)))

    def expire_checkout_session(self, session_id: str, *, idempotency_key: str) -> dict[str, Any]:
        """POST /v1/checkout/sessions/:id/expire (only an `open` session can be expired)."""
        return _to_dict(
            self._call(
                lambda: self.client.v1.checkout.sessions.expire(session_id, None, self._options(idempotency_key))  # type: ignore[arg-type]
            )
        )

    def list_checkout_sessions(self, **params: Any) -> Iterator[dict[str, Any]]:
        """GET /v1/checkout/sessions (e.g. created={"gte": .., "lt": ..}), every page."""
        return self._paginate(lambda q: self.client.v1.checkout.sessions.list(q), params)  # type: ignore[arg-type]

    def create_portal_session(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """POST /v1/billing_portal/sessions: a short-lived Customer Portal URL for one customer."""
        return _to_dict(
            self._call(
                lambda: self.client.v1.billing_portal.sessions.create(params, self._options(idempotency_key))  # type: ignore[arg-type]
            )
        )

    def create_test_clock(self, frozen_time: int, name: str, *, idempotency_key: str) -> dict[str, Any]:
        if self.mode != "test":
            raise StripeGatewayError("Test clocks exist only in test mode.", code="live_mode")
        return _to_dict(
            self._call(
                lambda: self.client.v1.test_helpers.test_clocks.create(
                    {"frozen_time": frozen_time, "name": name}, self._options(idempotency_key)  # type: ignore[arg-type]
                )
            )
        )

    def advance_test_clock(self, clock_id: str, frozen_time: int, *, idempotency_key: str) -> dict[str, Any]:
        return _to_dict(
            self._call(
                lambda: self.client.v1.test_helpers.test_clocks.advance(
                    clock_id, {"frozen_time": frozen_time}, self._options(idempotency_key)  # type: ignore[arg-type]
                )
            )
        )

    def retrieve_test_clock(self, clock_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.test_helpers.test_clocks.retrieve(clock_id)))

    def delete_test_clock(self, clock_id: str) -> dict[str, Any]:
        return _to_dict(self._call(lambda: self.client.v1.test_helpers.test_clocks.delete(clock_id)))
