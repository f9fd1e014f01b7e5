"""First 24 hours (admin): the runbook's metrics per hour from go-live, alerts, snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages import _charts, _launch_figures
from app_pages._shared import fragment_user, plain, require_admin, run_action, runtime, show_flash
from db.models.base import utcnow
from services import exports, fraud_signals, metrics
from services import metric_points as m
from services.metric_labels import label, percent

identity = require_admin()
rt = runtime()

st.title("First 24 hours")
st.caption("The go-live runbook's metrics (section 7), hourly from the go-live time, with its alerts (section 8).")

show_flash("board", refused="Nothing was changed")

golive = metrics.get_golive_time(rt.uow())
with st.expander("Go-live time: " + (golive.strftime("%Y-%m-%d %H:%M UTC") if golive else "not set"),
                 expanded=golive is None):
    with st.form("golive_time"):
        default = golive or utcnow()
        day = st.date_input("Date (UTC)", value=default.date())
        clock = st.time_input("Time (UTC)", value=default.time().replace(second=0, microsecond=0))
        if st.form_submit_button("Save go-live time"):
            run_action("board", lambda: metrics.set_golive_time(datetime.combine(day, clock, UTC), actor=identity.email,
                                                                settings=rt.settings, uow=rt.uow()),
                       "Go-live time saved.")

RANGES = {"1 h": timedelta(hours=1), "6 h": timedelta(hours=6), "24 h": timedelta(hours=24),
          "7 d": timedelta(days=7), "custom": None}
choice = st.radio("Range", list(RANGES), index=2, horizontal=True)
if RANGES[choice] is None:
    cols = st.columns(2)
    first = cols[0].date_input("From (UTC)", value=(golive or utcnow()).date())
    last = cols[1].date_input("To (UTC)", value=utcnow().date())
    if first > last:
        st.error("'From' must be on or before 'To'.")
        st.stop()
    start, end = datetime.combine(first, time.min, UTC), datetime.combine(last, time.max, UTC)
else:
    span = RANGES[choice]
    assert span is not None
    anchor = golive if golive and golive + span <= utcnow() else None
    start, end = (anchor, anchor + span) if anchor else (utcnow() - span, utcnow())

alerts = metrics.active_alerts(rt.uow(), settings=rt.settings)  # the worker sends them (services/worker.py)
for alert in alerts:
    st.error(f"**{alert.title}**: {plain(alert.detail)}")

GROUPS = {
    "Webhooks": [m.WEBHOOK_RECEIVED, m.WEBHOOK_DUPLICATE, m.WEBHOOK_IGNORED, m.WEBHOOK_INVALID_SIGNATURE,
                 m.EVENTS_BACKFILLED],
    "Subscriptions": [m.SUBSCRIPTION_PREVIEW, m.SUBSCRIPTION_CHANGE, m.PLAN_CHANGED, m.DOWNGRADE_SCHEDULED,
                      m.DOWNGRADE_APPLIED, m.RECONCILE_RUN, m.CHANGE_ERROR],
    "Invoices": [m.INVOICE_PAID, m.INVOICE_FAILED, m.INVOICE_ACTION_REQUIRED],
    "Dunning and SCA": [m.DUNNING_ENTERED, m.DUNNING_RECOVERED, m.SCA_ENTERED, m.SCA_COMPLETED],
}


@st.fragment(run_every=60)
def charts() -> None:
    if fragment_user() is None:  # the session ended while the page was open
        return
    data = metrics.board(rt.uow(), start=start, end=end)
    if data.empty:
        st.info("No data yet for this range: metrics appear as webhooks arrive and reconciliation runs.")
        return
    for group, names in GROUPS.items():
        st.subheader(group)
        cols = st.columns(len(names))
        for col, name in zip(cols, names, strict=True):
            col.metric(label(name), f"{data.totals[name]:,}", help=f"metric {name}")
        if group == "Dunning and SCA":
            entered, recovered = data.totals[m.DUNNING_ENTERED], data.totals[m.DUNNING_RECOVERED]
            st.metric("Dunning recovery rate", percent(recovered / entered if entered else None),
                      help="Recovered from dunning / entered dunning in this range (SCA cases are on "
                           "Dunning & SCA, whose recovery rate counts both)")
        frame = pd.DataFrame([{"hour": hour, "metric": label(name), "count": count}
                              for name in names for hour, count in data.series[name]])
        st.plotly_chart(_charts.counts(px.line(frame, x="hour", y="count", color="metric", markers=True)),
                        width="stretch")
    st.download_button("Download CSV", exports.csv_bytes(data.rows()),
                       file_name=f"first-24h-{start:%Y%m%dT%H}.csv", mime="text/csv")


charts()
_launch_figures.render(identity, start, end)

st.subheader("Fraud signals")
st.caption("Card testing, dispute volume and early-fraud-warning frequency (ALwrity §7–8): each alerts at its "
           "threshold (settings ALERT_CARD_DECLINES_PER_HOUR, ALERT_SMALL_CHARGES_PER_HOUR, ALERT_DISPUTES_PER_DAY, "
           "ALERT_EFWS_PER_DAY; 0 turns one off).")
st.dataframe(pd.DataFrame([{"signal": s.title, "window": s.window, "now": s.value,
                            "alert at": s.threshold or "off", "state": "ALERT" if s.firing else "ok"}
                           for s in fraud_signals.signals(rt.uow(), settings=rt.settings)]), hide_index=True)

with st.expander("QA / test clocks (kept out of the figures and alerts above)"):
    qa_board = metrics.board(rt.uow(), start=start, end=end, test=True)
    if qa_board.empty:
        st.caption("No QA-matrix or test-clock activity in this range.")
    else:
        names = [name for name, total in qa_board.totals.items() if total]
        qa_cols = st.columns(min(4, len(names)))
        for index, name in enumerate(names):
            qa_cols[index % len(qa_cols)].metric(f"QA: {label(name)}", f"{qa_board.totals[name]:,}")

st.subheader("Snapshots")
st.caption("A snapshot freezes the board from the go-live time (24 h) for sign-off; it never changes afterwards.")
if st.button("Take snapshot"):
    run_action("board", lambda: metrics.create_snapshot(hours=24, actor=identity.email, settings=rt.settings,
                                                        uow=rt.uow()),
               lambda record: f"Snapshot {record['id']} saved (sha256 {record['sha256'][:12]}…).")
snapshots = metrics.list_snapshots(rt.uow())
if snapshots:
    st.dataframe(pd.DataFrame([{"id": s.id, "taken": s.created_at, "by": s.created_by, "from": s.window_start,
                                "to": s.window_end, "sha256": s.sha256[:16]} for s in snapshots]),
                 hide_index=True, width="stretch")
