"""The Webhooks page's tools: delivery success per endpoint, "send test event", and the guided
signing-secret roll. Widgets only; the logic is in services/webhook_log.py,
services/webhook_test_event.py and services/secret_roll.py."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages import _charts
from app_pages._shared import fragment_user, plain, run_action, show_error, show_flash
from db.models.base import utcnow
from services import secret_roll, webhook_log, webhook_secrets, webhook_test_event
from services.auth import Identity
from services.runtime import Runtime


def render_endpoint_success(rt: Runtime, since: datetime, window: str) -> None:
    st.subheader("Delivery success per endpoint")
    st.caption("Each Stripe endpoint signs with its own secret, so deliveries are credited to the endpoint whose "
               "secret verified them. Refused requests (bad signature, other mode) cannot be credited to one and "
               "show apart. Stripe's own per-endpoint attempt log (timeouts, non-2xx answers) is only in the "
               "Stripe Dashboard; Stripe has no API for it.")
    if st.button("Ask Stripe which events are not delivered yet", key="ask_undelivered",
                 help="The Events API's delivery_success=false: events still pending or that failed every "
                      "delivery attempt to at least one endpoint (not per endpoint)."):
        try:
            st.session_state["undelivered"] = (window, webhook_log.undelivered_at_stripe(rt, since=since))
        except Exception as error:  # Stripe's refusal in its words
            show_error(error)
    asked = st.session_state.get("undelivered")
    if asked and asked[0] == window:
        undelivered = asked[1]
        if not undelivered.events:
            st.success(f"Stripe reports every event of the last {window} delivered to every endpoint.")
        else:
            st.warning(f"Stripe has {'at least ' if undelivered.more else ''}{len(undelivered.events)} event(s) of "
                       f"the last {window} not yet delivered to every endpoint; {undelivered.missing_here} of them "
                       "never reached this console (`billing-ops sync` backfills them).")
            st.dataframe(pd.DataFrame(undelivered.events), hide_index=True, width="stretch")
    rows = webhook_log.endpoint_success_per_hour(rt.uow(), since=since, settings=rt.settings)
    if not rows:
        st.info(f"No webhook deliveries in the last {window}.")
        return
    frame = pd.DataFrame(rows)
    frame["requests"] = frame["accepted"] + frame["refused"]
    bars = px.bar(frame, x="hour", y="requests", color="endpoint",
                  title=f"Signed requests per hour by endpoint (last {window})",
                  labels={"hour": "hour (UTC, arrival)", "requests": "requests", "endpoint": "endpoint (signing key)"})
    bars.update_xaxes(type="category")  # one bar per hour label, not a time axis of milliseconds
    st.plotly_chart(_charts.counts(bars), width="stretch")
    share = frame.groupby("hour", as_index=False)["success"].first()
    share["success %"] = (share["success"] * 100).round(1)
    line = px.line(share, x="hour", y="success %", markers=True, range_y=[0, 105],
                   title="Share of signed requests answered 2xx (stored), per hour",
                   labels={"hour": "hour (UTC, arrival)"})
    line.update_xaxes(type="category")
    st.plotly_chart(line, width="stretch")


def render_test_event(identity: Identity, rt: Runtime) -> None:
    st.subheader("Send test event")
    ok, explanation = webhook_test_event.available(rt.settings)
    (st.caption if ok else st.info)(explanation)
    if not ok:
        return
    show_flash("test_event", refused="Nothing was sent")
    if st.button("Send test event", key="send_test_event"):
        # Kept until Stripe accepted it: a retried click reuses the token, so it pays once.
        token = st.session_state.setdefault("test_event_token", uuid.uuid4().hex)
        run_action("test_event", lambda: webhook_test_event.send_test_event(
            token, actor=identity.email, settings=rt.settings, uow=rt.uow(), runtime=rt), _remember_sent)
    sent_event = st.session_state.get("test_event_sent")
    if isinstance(sent_event, webhook_test_event.SentTestEvent):
        _arrival(rt, sent_event)


def _remember_sent(sent: webhook_test_event.SentTestEvent) -> str:
    st.session_state.pop("test_event_token", None)  # the next click is a new test payment
    st.session_state["test_event_sent"] = sent
    return f"Sent test payment {plain(sent.payment_intent)}."


@st.fragment(run_every=2)
def _arrival(rt: Runtime, sent: webhook_test_event.SentTestEvent) -> None:
    if fragment_user() is None:
        return
    arrived = webhook_test_event.arrival(rt.uow(), sent)
    if arrived is None:
        waited = (utcnow() - sent.sent_at).total_seconds()
        st.info(f"Sent a test payment {plain(sent.payment_intent)}; waiting for {plain(sent.event_type)} about "
                f"{plain(sent.charge or '?')} ({waited:.0f} s so far).")
        if waited > SLOW_ARRIVAL_SECONDS:
            st.warning(f"Nothing after {SLOW_ARRIVAL_SECONDS} s: check below that the endpoint is enabled and "
                       f"subscribed to {plain(sent.event_type)}, that the receiver is reachable, and the invalid "
                       "signature count above (a secret mismatch shows there).")
        return
    configured = webhook_secrets.fingerprints(rt.settings.webhook_secret_values)
    keys = webhook_log.signature_result("webhook", arrived.signed_with, configured)
    st.success(f"Test event arrived: {plain(arrived.event_id)} ({plain(sent.event_type)}) at "
               f"{arrived.received_at:%H:%M:%S} UTC, {plain(keys)}, {plain(arrived.status)}.")


SLOW_ARRIVAL_SECONDS = 30
STATE_MARKS = {"done": "✅", "current": "▶️", "waiting": "○"}
STEP_HELP = {
    "add": ("Roll the secret at Stripe: Dashboard → Developers → Webhooks → this endpoint → Roll secret, and keep "
            "the old secret signing for an overlap (Stripe signs each delivery with both until then). Copy the new "
            "secret once, append it to STRIPE_WEBHOOK_SECRETS on every receiver and on the console "
            "(comma-separated, keep the old one), restart them, then check."),
    "verify": ("Wait for the next delivery or send a test event above, then check: a delivery received since "
               "step 1 must have been verified with the new key."),
    "retire": ("Remove the old secret from STRIPE_WEBHOOK_SECRETS everywhere and restart; at Stripe, let the old "
               "secret expire (or expire it now). Then check."),
}
STEP_ACTIONS = {"add": secret_roll.confirm_added, "verify": secret_roll.confirm_verified,
                "retire": secret_roll.confirm_retired}


def render_secret_roll(identity: Identity, rt: Runtime) -> None:
    st.subheader("Roll the signing secret")
    configured = secret_roll.configured(rt.settings)
    st.caption("Runbook §3: capture the new secret and append it to STRIPE_WEBHOOK_SECRETS, keeping the old one "
               "for the overlap. Configured now: " + (", ".join(webhook_secrets.label(fp, configured)
                                                                for fp in configured) or "none")
               + ". Keys are fingerprints; no secret is shown.")
    if rt.settings.stripe_api_base:
        st.caption("On the emulator, `POST /_emulator/webhook_endpoints/<id>/roll_secret` with "
                   "`{\"expires_in_s\": 3600}` stands in for the Dashboard's Roll secret and returns the new "
                   "secret once.")
    show_flash("roll", refused="Not yet")
    state = secret_roll.roll_state(rt.uow())
    if not state.active:
        if state.finished_at:
            st.caption(("Last roll cancelled" if state.cancelled else "Last roll finished")
                       + f" at {_when(state.finished_at)}.")
        retiring: list[str] = configured
        if len(configured) > 1:  # several endpoints (or a roll's leftover): say which key is rolled
            retiring = st.multiselect("Keys being rolled (retired at the end)", configured, default=configured,
                                      key="roll_retiring",
                                      format_func=lambda fp: webhook_secrets.label(fp, configured))
        if st.button("Start a secret roll", key="roll_start"):
            run_action("roll", lambda: secret_roll.start_roll(retiring, actor=identity.email, settings=rt.settings,
                                                              uow=rt.uow()),
                       "Roll started: " + ", ".join(f"key {fp}" for fp in retiring) + " will be retired at the end.")
        return
    st.caption(f"Started by {plain(state.started_by)} at {_when(state.started_at)}; retiring "
               + ", ".join(f"key {fp}" for fp in state.old) + ".")
    for number, step in enumerate(secret_roll.STEPS, start=1):
        step_state = state.step_state(step)
        done = (state.done or {}).get(step)
        line = f"{STATE_MARKS[step_state]} **{number}. {secret_roll.STEP_TITLES[step]}**"
        if done:
            facts = f" (key {done['new']})" if "new" in done else f" (event {done['event']})" if "event" in done else ""
            line += f" — done by {plain(done['by'])} at {_when(done['at'])}{plain(facts)}"
        st.markdown(line)
        if step_state == "current":
            st.caption(STEP_HELP[step])
            action = STEP_ACTIONS[step]
            if st.button(f"Check: {secret_roll.STEP_TITLES[step].lower()}", key=f"roll_check_{step}"):
                run_action("roll", functools.partial(action, actor=identity.email, settings=rt.settings,
                                                     uow=rt.uow()), f"Step {number} done.")
    with st.expander("Cancel this roll"):
        with st.form("roll_cancel"):
            reason = st.text_input("Why", key="roll_cancel_reason")
            if st.form_submit_button("Cancel the roll"):
                run_action("roll", lambda: secret_roll.cancel_roll(reason, actor=identity.email, settings=rt.settings,
                                                               uow=rt.uow()), "Roll cancelled.")


def _when(iso: str | None) -> str:
    """`2026-12-04 18:33 UTC` from a stored ISO time (plain text as it is if it does not parse)."""
    try:
        return datetime.fromisoformat(str(iso)).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return plain(iso)
