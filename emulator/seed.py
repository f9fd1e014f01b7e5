"""`/_emulator/seed`: a realistic month of a small SaaS, built through the same
engine calls real traffic uses, with historic timestamps, so every object has
the events Stripe would have sent (the demo backfills from them)."""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any

from emulator.billing import calendar as billing_calendar
from emulator.billing.portal import portal_configuration
from emulator.engine import Engine
from emulator.state import DAY, Json
from emulator.wire.protocol import StripeApiError

PLANS = {"basic": (900, 9_000), "pro": (2_900, 29_000), "business": (9_900, 99_000)}
FIRST_NAMES = ["Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Radia", "Dennis", "Frances",
               "Edsger", "Katherine", "Tim", "Hedy", "John", "Sophie", "Yukihiro", "Anita", "Guido", "Joan"]
LAST_NAMES = ["Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Thompson", "Perlman", "Ritchie",
              "Allen", "Dijkstra", "Johnson", "Berners-Lee", "Lamarr", "McCarthy", "Wilson", "Matsumoto", "Borg"]


class _Clock:
    """Pins the engine's notion of 'now' for customers without a test clock while seeding history."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.original = engine.now_for

    def at(self, moment: int) -> None:
        def pinned(_customer_id: str | None = None) -> int:
            return moment

        self.engine.now_for = pinned  # type: ignore[method-assign,assignment]

    def release(self) -> None:
        self.engine.now_for = self.original  # type: ignore[method-assign]


def seed_month(engine: Engine, *, customers: int = 300, seed: int = 42) -> Json:
    rng = random.Random(seed)
    now = int(time.time())
    clock = _Clock(engine)
    counts = {"customers": 0, "subscriptions": 0, "upgrades": 0, "scheduled_downgrades": 0,
              "downgrades_due_soon": 0, "dunning": 0, "sca": 0, "disputes": 0, "efws": 0, "refunds": 0,
              "cancellations": 0, "ce3_eligible_disputes": 0,
              "escalated_inquiries": 0, "card_testing_declines": 0}
    try:
        clock.at(now - 90 * DAY)
        prices: dict[str, dict[str, str]] = {}
        products = []
        for rank, (plan, (monthly, yearly)) in enumerate(PLANS.items()):
            product = engine.create_product({"name": plan.title(), "metadata": {"plan": plan, "rank": str(rank)}},
                                            created=now - 90 * DAY)
            products.append(product["id"])
            prices[plan] = {}
            for interval, amount, stripe_interval in (("monthly", monthly, "month"), ("yearly", yearly, "year")):
                price = engine.create_price(
                    {"currency": "usd", "unit_amount": amount, "product": product["id"],
                     "recurring": {"interval": stripe_interval}, "lookup_key": f"{plan}_{interval}",
                     "nickname": f"{plan.title()} {interval}", "metadata": {"plan": plan, "interval": interval}},
                    created=now - 90 * DAY,
                )
                prices[plan][interval] = price["id"]
        portal = engine.put("billing_portal.configuration", portal_configuration(engine, {
            "features": {
                "customer_update": {"enabled": "true"},
                "invoice_history": {"enabled": "true"},
                "payment_method_update": {"enabled": "true"},
                "subscription_cancel": {"enabled": "true", "mode": "at_period_end", "proration_behavior": "none"},
                "subscription_update": {
                    "enabled": "true", "default_allowed_updates": ["price"], "proration_behavior": "none",
                    "products": [{"product": pid, "prices": [p for plan in prices.values() for p in plan.values()]}
                                 for pid in products],
                },
            },
            "business_profile": {"headline": "Manage your subscription"},
        }))

        dispute_slots = max(12, customers // 25)
        efw_slots = max(10, customers // 30)
        for index in range(customers):
            _seed_customer(engine, clock, rng, index, now, prices, counts,
                           dispute=index < dispute_slots, efw=dispute_slots <= index < dispute_slots + efw_slots)
        _shape_disputes(engine, rng, now, counts)
        _escalate_one_inquiry(engine, now, counts)
        if customers:  # customers=0 seeds the catalogue only
            _seed_ce3_customer(engine, clock, now, counts)
            _seed_card_testing(engine, clock, now, counts)
        clock.release()
        for subscription in engine.all("subscription"):
            engine.advance_subscription(subscription, now)
    finally:
        clock.release()
    counts["events"] = len(engine.events)
    return {"prices": prices, "portal_configuration": portal["id"], "counts": counts}


def _seed_customer(engine: Engine, clock: _Clock, rng: random.Random, index: int, now: int,
                   prices: dict[str, dict[str, str]], counts: dict[str, int], *, dispute: bool, efw: bool) -> None:
    roll = rng.random()
    due_soon = index % 40 == 7  # a few downgrades due inside the 15-minute reconcile lookahead
    # Due-soon downgrades: the monthly period (anchor-day months) ends 2-13 minutes from now.
    signup = billing_calendar.boundary(now + rng.randint(120, 780), "month", 1, -1) if due_soon \
        else now - rng.randint(1 * DAY, 45 * DAY)
    clock.at(signup)
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    email = f"{name.lower().replace(' ', '.').replace('-', '')}.{index}@customers.example"
    card = "pm_card_visa"
    if dispute:
        card = "pm_card_createDisputeInquiry" if index % 6 == 5 else "pm_card_createDispute"
    elif efw:
        card = "pm_card_createIssuerFraudRecord"
    elif roll < 0.05:
        card = "pm_card_authenticationRequired"
    customer = engine.create_customer({"email": email, "name": name, "metadata": {"user_id": f"user_{index:05d}"},
                                       "payment_method": card}, created=signup)
    counts["customers"] += 1
    plan = "business" if roll > 0.9 else "pro" if roll > 0.55 or due_soon else "basic"
    interval = "yearly" if rng.random() < 0.15 and not due_soon else "monthly"
    try:
        subscription = engine.create_subscription(
            {"customer": customer["id"], "items": [{"price": prices[plan][interval]}],
             "metadata": {"user_id": f"user_{index:05d}"}}, now=signup)
    except StripeApiError:
        return
    counts["subscriptions"] += 1
    if subscription["status"] == "incomplete" and card == "pm_card_authenticationRequired":
        counts["sca"] += 1
        if rng.random() < 0.6:  # most customers finish 3-D Secure within a few hours
            clock.at(signup + rng.randint(600, 6 * 3600))
            invoice = engine.objects["invoice"][subscription["latest_invoice"]]
            engine.authenticate_payment_intent(invoice["_payment_intent"])
        return
    later = signup + rng.randint(2 * 3600, 20 * DAY)
    if later >= now:
        later = signup + 3600
    if due_soon:
        clock.at(signup + 3600)
        engine.update_subscription(subscription["id"], {"cancel_at_period_end": "true",
                                                        "metadata": {"pending_plan": "basic"}})
        counts["scheduled_downgrades"] += 1
        counts["downgrades_due_soon"] += 1
        return
    action = rng.random()
    clock.at(later)
    if plan == "basic" and action < 0.15:
        engine.update_subscription(subscription["id"], {
            "items": [{"id": subscription["items"]["data"][0]["id"], "price": prices["pro"][interval]}],
            "proration_behavior": "always_invoice"})
        counts["upgrades"] += 1
    elif plan in ("pro", "business") and action < 0.12:
        engine.update_subscription(subscription["id"], {"cancel_at_period_end": "true",
                                                        "metadata": {"pending_plan": "basic"}})
        counts["scheduled_downgrades"] += 1
    elif action < 0.17:
        engine.update_subscription(subscription["id"], {"cancel_at_period_end": "true"})
        counts["cancellations"] += 1
    elif action < 0.25 and card == "pm_card_visa" and interval == "monthly":
        # The card starts failing before renewal: dunning; about half recover by a card update.
        failing = engine.attach_payment_method("pm_card_chargeCustomerFail", customer["id"])
        engine.objects["customer"][customer["id"]]["invoice_settings"]["default_payment_method"] = failing["id"]
        counts["dunning"] += 1
        if rng.random() < 0.5:
            renewal = subscription["items"]["data"][0]["current_period_end"]
            if renewal + 2 * DAY < now:
                clock.release()
                # The renewal is a draft for an hour, then finalized and charged (and declined).
                engine.advance_subscription(subscription, renewal + 2 * 3600)
                clock.at(renewal + rng.randint(3600, 2 * DAY))
                open_invoices = [i for i in engine.all("invoice") if i["customer"] == customer["id"]
                                 and i["status"] == "open"]
                if open_invoices:
                    visa = engine.attach_payment_method("pm_card_visa", customer["id"])
                    engine.objects["customer"][customer["id"]]["invoice_settings"]["default_payment_method"] = \
                        visa["id"]
                    with contextlib.suppress(StripeApiError):
                        engine.pay_invoice(open_invoices[0]["id"], {"payment_method": visa["id"]})
    elif action < 0.28 and card == "pm_card_visa":
        charge_id = _latest_charge(engine, customer["id"])
        if charge_id:
            engine.create_refund({"charge": charge_id, "reason": "requested_by_customer",
                                  "amount": str(engine.objects["charge"][charge_id]["amount"] // 2)})
            counts["refunds"] += 1
    if efw:
        counts["efws"] += 1
        charge_id = _latest_charge(engine, customer["id"])
        if charge_id and index % 4 == 1:  # some EFWs were already refunded by someone
            clock.at(signup + 2 * DAY)
            engine.create_refund({"charge": charge_id, "reason": "fraudulent"})
            counts["refunds"] += 1
        elif charge_id and index % 4 == 2:  # and some became disputes anyway
            engine.create_dispute_for(engine.objects["charge"][charge_id], signup + 5 * DAY)
    if dispute:
        counts["disputes"] += 1


def _latest_charge(engine: Engine, customer_id: str) -> str | None:
    charges = [c for c in engine.all("charge") if c.get("customer") == customer_id and c["status"] == "succeeded"]
    return max(charges, key=lambda c: c["_seq"])["id"] if charges else None


def _shape_disputes(engine: Engine, rng: random.Random, now: int, counts: dict[str, int]) -> None:
    """Spread deadlines from overdue to ten days out, and settle some as Stripe would have."""
    disputes = sorted(engine.all("dispute"), key=lambda d: d["_seq"])
    outcomes: list[tuple[str, Any]] = [("open", None)] * 6 + [("under_review", None), ("won", "winning_evidence"),
                                                               ("lost", "losing_evidence"), ("open", None),
                                                               ("under_review", None), ("open", None)]
    for position, dispute in enumerate(disputes):
        outcome, text = outcomes[position % len(outcomes)]
        charge = engine.objects["charge"][dispute["charge"]]
        due_in = [-2 * DAY, 6 * 3600, 2 * DAY, 4 * DAY, 7 * DAY, 10 * DAY][position % 6] + rng.randint(0, 3600)
        dispute["created"] = min(dispute["created"], now - DAY)
        dispute["evidence_details"]["due_by"] = now + due_in if outcome == "open" else now + 5 * DAY
        if outcome in ("under_review", "won", "lost") and dispute["status"] == "needs_response":
            customer = engine.objects["customer"].get(charge.get("customer") or "", {})
            evidence = {"customer_name": customer.get("name") or "", "customer_email_address":
                        customer.get("email") or "", "uncategorized_text": "Service was delivered as described."}
            engine.update_dispute(dispute["id"], {"evidence": evidence, "submit": "true"})
            if text:  # settled in the past, so the month reads as Stripe would show it
                engine._close_dispute(dispute, "won" if text == "winning_evidence" else "lost",
                                      now - rng.randint(3600, 3 * DAY))
    counts["disputes"] = len(disputes)


CE3_IP = "203.0.113.42"  # documentation range (RFC 5737)
CE3_DEVICE = "device-7f3a9c2e-41b8-4d0a"


def _seed_ce3_customer(engine: Engine, clock: _Clock, now: int, counts: dict[str, int]) -> None:
    """A long-standing customer on Stripe's CE 3.0 test card: three undisputed payments 130 to 250 days
    ago from the same IP and device, then a Visa 10.4 fraud dispute on today's payment.

    Stripe's test card disputes every payment made with it, so the earlier payments are seeded as the
    same card's history before it was disputed (its behaviour switched off while they are made)."""
    clock.at(now - 260 * DAY)
    customer = engine.create_customer({"email": "casey.longtime@customers.example", "name": "Casey Longtime",
                                       "metadata": {"user_id": "user_ce3_0001"}}, created=now - 260 * DAY)
    counts["customers"] += 1
    pm = engine.attach_payment_method("pm_card_createCe3EligibleDispute", customer["id"])
    pm["_behaviour"] = "ok"
    for days_ago in (250, 190, 130, 3):
        if days_ago == 3:
            pm["_behaviour"] = "ce3"
        clock.at(now - days_ago * DAY)
        intent = engine.create_payment_intent({
            "amount": "29000", "currency": "usd", "customer": customer["id"], "payment_method": pm["id"],
            "confirm": "true", "description": "Pro plan, yearly seats top-up"})
        if intent.get("latest_charge"):
            engine.update_charge(intent["latest_charge"], {"metadata": {"ip": CE3_IP, "device_id": CE3_DEVICE}})
    counts["ce3_eligible_disputes"] += 1
    counts["disputes"] += 1


def _escalate_one_inquiry(engine: Engine, now: int, counts: dict[str, int]) -> None:
    """The oldest open inquiry became a chargeback two days ago (its timeline shows the step)."""
    inquiries = sorted((d for d in engine.all("dispute") if d["status"] == "warning_needs_response"),
                       key=lambda d: d["_seq"])
    if len(inquiries) >= 2:  # keep at least one open inquiry in the month
        engine.escalate_inquiry(inquiries[0]["id"], max(inquiries[0]["created"] + 3600, now - 2 * DAY))
        counts["escalated_inquiries"] += 1


# Stripe's decline test cards, by reason (emulator/payments/test_cards.py): a tester cycles through a few stolen cards.
CARD_TESTING_CARDS = ("pm_card_chargeDeclinedIncorrectCvc", "pm_card_chargeDeclinedExpiredCard",
                      "pm_card_chargeDeclinedInsufficientFunds", "pm_card_chargeDeclinedStolenCard")
CARD_TESTING_ATTEMPTS = 24  # above the default alerts (20 declines, 20 charges of at most 1.00 an hour)


def _seed_card_testing(engine: Engine, clock: _Clock, now: int, counts: dict[str, int]) -> None:
    """A card-testing burst in the last quarter hour: guest payments of 0.50 to 1.00 on a few
    declined cards, every one declined (a charge.failed each), so the First-24h board alerts."""
    for attempt in range(CARD_TESTING_ATTEMPTS):
        clock.at(now - 900 + attempt * 35)
        with contextlib.suppress(StripeApiError):  # the 402 a declined card answers
            engine.create_payment_intent({
                "amount": str(50 + (attempt * 13) % 51), "currency": "usd", "confirm": "true",
                "payment_method": CARD_TESTING_CARDS[attempt % len(CARD_TESTING_CARDS)],
                "description": "Gift card top-up (guest checkout)"})
        counts["card_testing_declines"] += 1
