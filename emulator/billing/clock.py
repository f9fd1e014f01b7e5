"""The passage of time: each subscription's due work in time order on test clocks and in real time."""

from __future__ import annotations

import time

from emulator.billing import calendar as billing_calendar
from emulator.billing.preview import InvoicePreviewMixin
from emulator.state import CLOCK_WORK, DAY, SUBSCRIPTION_WORK, Json
from emulator.wire.protocol import StripeApiError


class ClockMixin(InvoicePreviewMixin):
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
                    if work_item.due(self.as_engine(), subscription, at) == at:
                        work_item.run(self.as_engine(), subscription, at)

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
            work_at = work_item.due(self.as_engine(), subscription, until)
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
        # Stripe: an unpaid subscription's invoices keep being generated each cycle but stay drafts and
        # aren't attempted; to reactivate, set auto_advance to true, finalize and pay them.
        self._invoice_for(subscription, "subscription_cycle", lines, period_end, finalize=False,
                          auto_advance=subscription["status"] != "unpaid")

    def _send_upcoming(self, subscription: Json, at: int) -> None:
        """invoice.upcoming, the configured number of days before renewal (its invoice has no id)."""
        subscription["_upcoming_for"] = subscription["items"]["data"][0]["current_period_end"]
        preview = self.preview_invoice({"subscription": subscription["id"]})
        preview["created"] = at
        self.emit("invoice.upcoming", preview, created=at)

    def advance_clock(self, clock_id: str, frozen_time: int) -> Json:
        clock = self.get("test_clock", clock_id, "test_helpers.test_clock")
        if frozen_time <= clock["frozen_time"]:
            raise StripeApiError(400, "The test clock can only be advanced forward in time.",
                                 code="parameter_invalid_integer", param="frozen_time")
        clock["status"] = "advancing"
        for clock_work in CLOCK_WORK:
            clock_work(self.as_engine(), clock_id, frozen_time)
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
