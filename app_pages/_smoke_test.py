"""The Go-live page's guided live smoke test (widgets only; services/smoke_test.py does the work):
create the Checkout Session, show its URL and a QR code, watch for checkout.session.completed,
run the checks as soon as it is in, then offer one confirmed refund-and-cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from app_pages._shared import fragment_user, plain, run_action, runtime, show_error, show_flash
from services import smoke_test
from services.auth import AccessDenied, Identity
from services.smoke_test import SmokeTestError
from services.stripe_gateway import StripeGatewayError

ERRORS = (AccessDenied, SmokeTestError, StripeGatewayError)
WAITING = ("open", "completed", "checking")
STATUS_WORDS = {
    "open": "waiting for the payment (checkout.session.completed has not arrived)",
    "completed": "payment received; checking", "checking": "payment received; checking",
    "checked": "checks passed; refund and cancel to finish", "failed": "FAILED",
    "cleanup_failed": "refund or cancel FAILED; try again", "passed": "PASSED", "abandoned": "abandoned",
}


def _close() -> None:
    st.session_state.pop("smoke_confirm", None)


def render(identity: Identity, on_change: Callable[[], None]) -> None:
    rt = runtime()
    mode = rt.settings.stripe_mode
    st.header("Live smoke test")
    st.caption("ALwrity §9: a small real transaction in the current mode. The console creates a Checkout Session "
               "for STRIPE_SMOKE_TEST_PRICE; pay it (URL or QR code); when checkout.session.completed arrives the "
               "console checks, in order, that the subscription is active at Stripe, that the billing DB and the "
               "console show it, and that a Customer Portal session can be created; then refund and cancel. "
               "A run where every step passed ticks “Small live-mode test charge done”.")
    try:
        price = smoke_test.check_price(rt.settings, rt.gateway)
    except (SmokeTestError, StripeGatewayError) as error:
        price = None
        st.warning(plain(error.message))
    if price is not None:
        st.text(f"Price: {price.price_id} · {price.amount_text} {price.interval} · {price.product} "
                f"(Stripe {mode} mode)")
    show_flash("smoke", refused="Nothing more was done")
    if st.button("Create smoke-test Checkout Session", disabled=price is None, key="smoke_start"):
        run_action("smoke", lambda: smoke_test.start(actor=identity.email, settings=rt.settings, uow=rt.uow(),
                                                     gateway=rt.gateway),
                   lambda started: f"Smoke test #{started['id']}: Checkout Session created.")

    current = smoke_test.latest(rt.uow())
    if current is None:
        st.caption("No smoke test has run yet.")
        return
    if current["status"] in WAITING:
        _watch(current["id"], current["status"], identity)
    _show(current)
    refund_tried = any(s["step"] in ("refund", "cancel") for s in current["steps"])
    if current["status"] == "failed" and current["completed_at"] and not refund_tried and \
            st.button("Run the checks again", key="smoke_recheck"):
        run_action("smoke", lambda: smoke_test.run_checks(current["id"], actor=identity.email, settings=rt.settings,
                                                          uow=rt.uow(), gateway=rt.gateway, again=True),
                   lambda checked: f"Smoke test #{checked['id']}: checks ran again "
                                   f"({STATUS_WORDS.get(checked['status'], checked['status'])}).")
    can_refund = current["status"] in ("checked", "failed", "cleanup_failed") and current["payment_intent_id"]
    if can_refund and st.button("Refund and cancel…", type="primary", key="smoke_refund"):
        st.session_state["smoke_confirm"] = current["id"]
    if st.session_state.get("smoke_confirm") == current["id"]:
        _confirm(current, identity, mode, on_change)


def _show(current: dict[str, Any]) -> None:
    st.subheader(f"Smoke test #{current['id']}: {STATUS_WORDS.get(current['status'], current['status'])}")
    st.text(f"Started by {current['started_by']} at {smoke_test.when_text(current['started_at'])} in "
            f"{current['mode']} mode" + (f" · amount {current['amount_text']}" if current["amount_text"] else ""))
    if current["status"] == "open" and current["checkout_url"]:
        col1, col2 = st.columns([1, 2])
        col1.image(smoke_test.qr_png(current["checkout_url"]), caption="Scan to pay on a phone", width=220)
        col2.text("Checkout URL:")
        col2.code(current["checkout_url"], language=None)
        col2.link_button("Open Checkout", current["checkout_url"])
    st.dataframe(pd.DataFrame(smoke_test.step_rows(current)), hide_index=True, width="stretch")


def _watch(smoke_id: int, status: str, identity: Identity) -> None:
    """Poll while waiting: run the checks as soon as the event is in, then redraw the page.

    The one write a render makes, on purpose: the checks are the second half of the admin's own
    "Create smoke-test Checkout Session" (the page's caption and ARCHITECTURE promise they run when
    checkout.session.completed arrives, while the person who paid watches). `run_checks` claims the
    run (completed -> checking), so however many pages poll, the checks run once, audited as the
    watcher; a failed run is re-checked only by its "Run the checks again" button."""

    @st.fragment(run_every=2)
    def poll() -> None:
        if fragment_user() is None:
            return
        rt = runtime()
        now = smoke_test.get(rt.uow(), smoke_id)
        if now is not None and now["status"] == "completed":
            try:
                now = smoke_test.run_checks(smoke_id, actor=identity.email, settings=rt.settings, uow=rt.uow(),
                                            gateway=rt.gateway)
            except ERRORS as error:
                show_error(error)
                return
        if now is not None and now["status"] != status:
            st.rerun(scope="app")
        st.caption("Watching for checkout.session.completed …")

    poll()


def _confirm(current: dict[str, Any], identity: Identity, mode: str, on_change: Callable[[], None]) -> None:
    @st.dialog("Refund and cancel the smoke test?", on_dismiss=_close)
    def dialog() -> None:
        rt = runtime()
        st.markdown(f"Stripe **{mode}** mode: refund **{plain(current['amount_text'])}** in full and cancel the "
                    "subscription now. This cannot be undone.")
        st.text(f"Payment: {current['payment_intent_id']}\nSubscription: {current['subscription_id']}\n"
                f"Customer: {current['customer_id']}")
        col1, col2 = st.columns(2)
        if col1.button("Refund and cancel now", type="primary", key="smoke_refund_confirm"):
            run_action("smoke", lambda: smoke_test.refund_and_cancel(
                current["id"], confirmed_amount=current["amount"], actor=identity.email, settings=rt.settings,
                uow=rt.uow(), gateway=rt.gateway),
                lambda done: f"Smoke test #{done['id']} {'PASSED' if done['status'] == 'passed' else done['status']}: "
                             f"{done['amount_text']} refunded, subscription cancelled.",
                before=_close, after=on_change)
        if col2.button("Cancel", key="smoke_refund_cancel"):
            _close()
            st.rerun()

    dialog()
