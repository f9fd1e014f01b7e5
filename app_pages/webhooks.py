"""Webhooks (admin): delivery health, success per endpoint, the delivery log (filters, redacted
payloads, Replay, Mark resolved), failed events, test events, the guided secret roll, and the
endpoint registration."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages import _charts
from app_pages._shared import fragment_user, plain, require_admin, run_action, runtime, show_flash
from app_pages._webhook_log import render_log
from app_pages._webhook_tools import render_endpoint_success, render_secret_roll, render_test_event
from db.models.base import utcnow
from services import webhook_counts, webhook_log, webhooks

identity = require_admin()
rt = runtime()
SILENCE_WARNING_MINUTES = rt.settings.alert_webhook_silence_minutes

st.title("Webhooks")
st.caption("Every verified event is stored once before Stripe gets its 200; failed events stay here until "
           "they are processed.")


WINDOWS = {"1 h": timedelta(hours=1), "24 h": timedelta(hours=24), "7 d": timedelta(days=7)}
window = st.radio("Window", list(WINDOWS), index=1, horizontal=True)
include_test = st.toggle("Include QA / test-clock activity", value=False)


@st.fragment(run_every=30)
def health() -> None:
    if fragment_user() is None:  # the session ended while the page was open
        return
    since = utcnow() - WINDOWS[window]
    age = webhooks.last_event_age_seconds(rt.uow())
    counts = webhook_counts.delivery_counts(rt.uow(), since=since, include_test=include_test)
    statuses = webhooks.status_counts(rt.uow())
    cols = st.columns(4)
    cols[0].metric("Last event", "never" if age is None else f"{age / 60:.0f} min ago")
    cols[1].metric(f"Received ({window})", f"{counts.received:,}",
                   help="Webhook deliveries that passed verification: first copies and duplicates.")
    cols[2].metric(f"Received, unique events ({window})", f"{counts.unique:,}")
    cols[3].metric(f"Duplicates ({window})", f"{counts.duplicates:,}",
                   help="Verified deliveries of an event id that was already stored.")
    cols = st.columns(4)
    cols[0].metric(f"Ignored types ({window})", f"{counts.ignored:,}",
                   help="Verified events of a type the console does not handle (stored, not processed).")
    cols[1].metric(f"Backfilled, Events API ({window})", f"{counts.backfilled:,}",
                   help="Events stored by `billing-ops sync`; never counted as received deliveries.")
    cols[2].metric(f"Invalid signatures ({window})", f"{counts.invalid_signatures:,}")
    cols[3].metric("Failed / pending", f"{statuses.get('failed', 0) + statuses.get('pending', 0):,}")
    if age is None:
        st.info("No events received yet. Check the endpoint registration below.")
    elif age > SILENCE_WARNING_MINUTES * 60:
        st.warning(f"No event for {age / 60:.0f} minutes (threshold {SILENCE_WARNING_MINUTES} min): "
                   "is the endpoint enabled and reachable?")
    per_hour = webhook_counts.events_per_hour(rt.uow(), since=since, include_test=include_test)
    if per_hour:
        figure = px.bar(pd.DataFrame(per_hour), x="hour", y="events", color="source",
                        title=f"Stored events per hour of the event's time, deliveries vs backfill (last {window})",
                        labels={"hour": "hour (UTC, event created)", "events": "events", "source": "how it arrived"})
        figure.update_xaxes(type="category")  # one bar per hour label (a time axis ticks in milliseconds)
        st.plotly_chart(_charts.counts(figure), width="stretch")


health()
render_endpoint_success(rt, utcnow() - WINDOWS[window], window)
render_log(identity, rt)

st.subheader("Failed and unprocessed events")
pending = webhooks.unprocessed_events(rt.uow())
if not pending:
    st.success("Every stored event has been processed.")
else:
    st.dataframe(pd.DataFrame(pending), hide_index=True, width="stretch")
    choice = st.selectbox("Event to replay", [row["id"] for row in pending])

    def _close_replay() -> None:
        st.session_state.pop("replay_target", None)

    @st.dialog("Replay this event?", on_dismiss=_close_replay)
    def confirm_replay(event_id: str) -> None:
        row = next((r for r in pending if r["id"] == event_id), None)
        if row is None:
            _close_replay()
            return
        st.write(f"Run the handlers for **{plain(row['type'])}** {plain(event_id)} again "
                 f"(attempt {row['attempts'] + 1}). Handlers are idempotent: nothing is applied twice.")
        if st.button("Replay now", type="primary"):
            run_action("replay", lambda: webhook_log.replay(event_id, actor=identity.email, settings=rt.settings,
                                                            uow=rt.uow(), runtime=rt),
                       f"Replayed {plain(event_id)}: processed.", before=_close_replay)

    if st.button("Replay…"):
        st.session_state["replay_target"] = choice
    # The dialog stays open across reruns until confirmed or dismissed.
    if st.session_state.get("replay_target"):
        confirm_replay(st.session_state["replay_target"])
show_flash("replay", refused="Replay did not process it")

render_test_event(identity, rt)
render_secret_roll(identity, rt)

st.subheader("Endpoint registration")
check = webhooks.endpoint_registration_check(rt)
if check.error:
    st.warning(f"{plain(check.url or 'CONSOLE_WEBHOOK_URL is not set')}: {plain(check.error)}.")
else:
    st.write(f"{plain(check.url)} → endpoint {plain(check.endpoint_id)}, "
             + ("enabled." if check.enabled else "**disabled**."))
    if check.missing_events:
        st.error("Not subscribed to: " + plain(", ".join(check.missing_events)))
    else:
        st.success("Subscribed to every event the console needs.")
    if check.duplicates:
        st.warning(f"{check.duplicates} duplicate endpoint(s) for this URL: run `billing-ops prune-webhooks`.")
