"""The emulator's engine: one object holding the state, with Stripe's behaviour by area.

The areas are mixins stacked over the shared state, each built on the ones below it (so a
call always goes down the stack, and mypy checks it): `state.py` (objects, lock, time) ->
`events/emission.py` -> `objects/files.py` -> `payments/methods.py` -> `objects/customers.py`
-> `disputes/efws.py` -> `payments/refunds.py` -> `disputes/disputes.py` ->
`payments/intents.py` -> `billing/cancellation.py` -> `billing/invoices.py` ->
`billing/subscriptions.py` -> `billing/preview.py` -> `billing/clock.py`. A lower area that must
let a higher one react defines a hook method the higher one overrides
(`PaymentIntentsMixin._after_intent_outcome`, which billing uses to settle the invoice).
Shapes follow API version 2025-03-31.basil and later (billing periods on subscription items,
invoice.parent.subscription_details).
"""

from __future__ import annotations

from emulator.billing.clock import ClockMixin


class Engine(ClockMixin):
    """Stripe's behaviour over one state; routes (`@route`) call its methods under `lock`."""

