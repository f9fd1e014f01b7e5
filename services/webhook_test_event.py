"""'Send test event': make Stripe send the webhook endpoint a real, signed event.

Stripe has no API that sends a test event to an endpoint. Its own test trigger, the Stripe
CLI's `stripe trigger charge.succeeded`, creates the objects that cause the event through the
ordinary API: a confirmed PaymentIntent of 1.00 USD paid with the test PaymentMethod
`pm_card_visa`. The console makes the same call (test mode only: in live mode it would be a
real payment), so the event reaches every subscribed endpoint exactly as a real one does,
on Stripe's test mode and on the emulator alike. The PaymentIntent says what it is in its
description and `metadata.qa_run`, and every send is audited with the PaymentIntent's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.models.base import utcnow
from db.repositories import webhook_events
from db.session import UnitOfWork
from services import audit
from services.audit import privileged
from services.config import Settings
from services.errors import ConsoleError
from services.runtime import Runtime

TEST_EVENT_TYPE = "charge.succeeded"
TEST_PAYMENT_METHOD = "pm_card_visa"
QA_RUN_TAG = "webhook_test_event"
STRIPE_CLI_COMMAND = "stripe trigger charge.succeeded"
# The PaymentIntent the Stripe CLI's charge.succeeded fixture creates: 1.00 USD, confirmed at once.
TEST_PAYMENT: dict[str, Any] = {
    "amount": 100, "currency": "usd", "payment_method": TEST_PAYMENT_METHOD, "confirm": True,
    # Card only: with redirect-capable methods allowed Stripe would demand a return_url.
    "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    "description": "(webhook test event from the Billing Ops Console)",
    "metadata": {"qa_run": QA_RUN_TAG, "sent_by": "billing-ops console"},
}


class WebhookTestEventError(ConsoleError):
    """The test event was refused or Stripe refused the payment; nothing was sent."""


@dataclass(frozen=True)
class SentTestEvent:
    payment_intent: str
    charge: str | None
    event_type: str
    sent_at: datetime


@dataclass(frozen=True)
class Arrival:
    event_id: str
    received_at: datetime
    status: str
    signed_with: str | None


def available(settings: Settings) -> tuple[bool, str]:
    """Whether this console can send one, and what the page should say."""
    if settings.stripe_mode == "live":
        return False, ("Live mode: a test event would be a real 1.00 USD payment, so it is not offered. Send one "
                       f"from a test-mode console, or with the Stripe CLI against test mode (`{STRIPE_CLI_COMMAND}`).")
    target = "the Stripe emulator" if settings.stripe_api_base else "Stripe (test mode)"
    return True, (f"Stripe has no API that sends a test event. Like the Stripe CLI's `{STRIPE_CLI_COMMAND}`, this "
                  f"makes a 1.00 USD test payment with `{TEST_PAYMENT_METHOD}` on {target}, which sends a real, signed "
                  f"`{TEST_EVENT_TYPE}` to every subscribed endpoint.")


@privileged("webhooks.test_event")
def send_test_event(request_token: str, *, actor: str, settings: Settings, uow: UnitOfWork,
                    runtime: Runtime) -> SentTestEvent:
    """One test payment per `request_token` (the page makes one per click): the idempotency key
    is derived from it, so a retried or double-submitted click pays once."""
    key = f"webhook-test-event:{request_token}"
    ok, why = available(settings)
    if not ok or not request_token:
        with uow:
            audit.record(uow, actor=actor, action="webhooks.test_event", result="refused", idempotency_key=key,
                         error=why if not ok else "no request token")
            uow.commit()
        raise WebhookTestEventError(why if not ok else "Refresh the page and try again.")
    try:
        intent = runtime.gateway.create_payment_intent(dict(TEST_PAYMENT), idempotency_key=key)
    except Exception as error:  # Stripe's refusal, shown in its words; audited
        message = getattr(error, "user_message", None) or getattr(error, "message", None) or str(error)
        with uow:
            audit.record(uow, actor=actor, action="webhooks.test_event", result="error", idempotency_key=key,
                         error=str(message))
            uow.commit()
        raise WebhookTestEventError(f"Stripe refused the test payment: {message}") from None
    charge = intent.get("latest_charge")
    charge_id = charge.get("id") if isinstance(charge, dict) else charge
    with uow:
        audit.record(uow, actor=actor, action="webhooks.test_event", result="ok", target=str(intent["id"]),
                     idempotency_key=key, details={"charge": charge_id, "expects": TEST_EVENT_TYPE})
        uow.commit()
    return SentTestEvent(str(intent["id"]), str(charge_id) if charge_id else None, TEST_EVENT_TYPE, utcnow())


def arrival(uow: UnitOfWork, sent: SentTestEvent) -> Arrival | None:
    """The test payment's event once the receiver has stored it (None until then)."""
    if not sent.charge:
        return None
    with uow:
        row = webhook_events.first_about(uow, object_id=sent.charge, event_type=sent.event_type)
    return None if row is None else Arrival(row.id, row.received_at, row.status, row.signed_with)
