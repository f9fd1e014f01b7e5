"""Dunning & SCA (admin): who entered, who recovered, how and how fast, what is still open."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages import _charts
from app_pages._shared import require_admin, runtime
from db.models.base import utcnow
from services import dunning
from services.metric_labels import hours, percent

RECOVERY_METHOD_LABELS = {"retry": "retry", "card_update": "card update", "customer_action": "customer's action"}

identity = require_admin()
rt = runtime()

st.title("Dunning & SCA")
st.markdown(
    "- **Entered dunning**: an invoice's payment failed at least once.\n"
    "- **Entered SCA**: a payment needed the customer's authentication (3-D Secure).\n"
    "- **Recovered**: the invoice was paid afterwards, by a *retry*, a *card update* or the *customer's action*.\n"
    "- **Still open**: entered and not paid yet; age counts from when it entered.\n"
    "- **Closed unpaid**: voided or marked uncollectible without being paid."
)
days = st.selectbox("Period", [1, 7, 30, 90], index=2,
                    format_func=lambda d: "last 24 hours" if d == 1 else f"last {d} days")
until = utcnow()
since = until - timedelta(days=days)
summary = dunning.recovery_summary(rt.uow(), since=since, until=until)
if summary.dunning_entered + summary.sca_entered == 0:
    st.info("No dunning or SCA cases in this period yet.")
    st.stop()

cols = st.columns(5)
cols[0].metric("Entered dunning", summary.dunning_entered)
cols[1].metric("Recovered", summary.dunning_recovered)
cols[2].metric("Entered SCA", summary.sca_entered)
cols[3].metric("SCA completed", summary.sca_completed)
cols[4].metric("Recovery rate", percent(summary.recovery_rate),
               help="Cases recovered / cases entered, dunning and SCA together")
timing = st.columns(4)
timing[0].metric("Median time to recover", hours(summary.hours_to_recover_median))
timing[1].metric("90th percentile time to recover", hours(summary.hours_to_recover_p90))
timing[2].metric("Still open", summary.open_cases,
                 help=f"Owing {summary.open_amount_text}")
# Every case that entered is recovered, still open or closed unpaid: the three add up to the cases.
timing[3].metric("Closed unpaid", summary.closed_unpaid, help="Voided or marked uncollectible without being paid")

if summary.by_method:
    st.plotly_chart(px.pie(pd.DataFrame([{"how": RECOVERY_METHOD_LABELS.get(k, k), "invoices": v}
                                         for k, v in summary.by_method.items()]),
                           names="how", values="invoices", title="How cases recovered"), width="stretch")
cohorts = dunning.weekly_cohorts(rt.uow(), since=since, until=until)
if cohorts:
    frame = pd.DataFrame(cohorts).melt(id_vars="week", value_vars=["entered", "recovered"], var_name="cases",
                                       value_name="invoices")
    st.plotly_chart(_charts.counts(px.bar(frame, x="week", y="invoices", color="cases", barmode="group",
                                  title="Cohorts by the week they entered")), width="stretch")
st.subheader("By plan")
st.dataframe(pd.DataFrame(dunning.by_plan(rt.uow(), since=since, until=until)), hide_index=True, width="stretch")
st.subheader("Still open")
still_open = dunning.open_cases(rt.uow())
if still_open:
    st.dataframe(pd.DataFrame(still_open), hide_index=True, width="stretch")
else:
    st.success("No open cases.")
