"""Every area's /v1 routes: importing a module registers its routes (`emulator.wire.routes.route`),
so the server imports this one module. A new area's routes module is listed here."""

from __future__ import annotations

from emulator import settings  # tax settings, payment method domains
from emulator.billing import (
    checkout,  # Checkout Sessions (and their expiry)
    credit_notes,
    discounts,  # coupons, promotion codes, invoice discounts
    invoice_actions,  # invoice update/delete/send/lines, invoice items, invoice payments
    portal,  # billing portal configurations and sessions
    schedules,  # subscription schedules
    subscription_items,
)
from emulator.billing import routes as billing_routes  # subscriptions, invoices, test clocks
from emulator.disputes import radar  # Radar value lists and items
from emulator.disputes import routes as dispute_routes  # disputes, early fraud warnings
from emulator.events import routes as event_routes  # events, webhook endpoints
from emulator.objects import routes as object_routes  # customers, products, prices, files
from emulator.payments import balance, intent_actions, setup_intents
from emulator.payments import routes as payment_routes  # payment methods, intents, charges, refunds
from emulator.wire import search  # the /v1/*/search routes

AREAS = (settings, checkout, credit_notes, discounts, invoice_actions, portal, schedules, subscription_items,
         billing_routes, radar, dispute_routes, event_routes, object_routes, balance, intent_actions, setup_intents,
         payment_routes, search)
