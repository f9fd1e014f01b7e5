"""Dispute analytics (admin): win rate by reason and network, losses and fees, time to respond,
and this month's rate per network against the card networks' monitoring programmes."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages._shared import require_admin, runtime
from services import dispute_analytics as da
from services.money import format_totals

identity = require_admin()
rt = runtime()

st.title("Dispute analytics")
days = st.selectbox("Disputes opened in the last", [30, 90, 365], index=2, format_func=lambda d: f"{d} days")
result = da.compute(rt.uow(), days=int(days))

for warning in result.warnings:
    st.warning(warning)
if not result.warnings:
    st.success("Every network's dispute rate is below the console's early warning and every programme's ratio.")

top = st.columns(4)
top[0].metric("Amount lost", format_totals(result.amount_lost, empty="nothing"))
top[1].metric("Dispute fees", format_totals(result.fees, empty="none reported"))
top[2].metric("Amount won back", format_totals(result.amount_won, empty="nothing"))
top[3].metric("Still at risk", format_totals(result.at_risk, empty="nothing"),
              help="Disputes opened in this period and not decided yet: needing a response or under review "
                   "(the Disputes queue's Amount at risk counts only those still needing a response).")
median, p90 = result.median_respond_hours, result.p90_respond_hours
cols = st.columns(3)
cols[0].metric("Time to respond (median)", f"{median:.1f} h" if median is not None else "no responses yet")
cols[1].metric("Time to respond (90th percentile)", f"{p90:.1f} h" if p90 is not None else "no responses yet")
cols[2].metric("Visa CE 3.0 submissions (won)", f"{result.ce3_submitted} ({result.ce3_won})")
st.caption("Time to respond: from the dispute opening to our evidence submission or acceptance. Amount lost "
           "counts lost disputes (accepted ones included); fees are those Stripe reports on the dispute's "
           "balance transactions.")

st.subheader("Win rate by reason")
st.dataframe(pd.DataFrame(da.table(result.by_reason, "reason")), hide_index=True, width="stretch")
st.subheader("Win rate by network")
st.dataframe(pd.DataFrame(da.table(result.by_network, "network")), hide_index=True, width="stretch")

st.subheader("Monitoring programmes (this month)")
rows = []
for rate in result.rates:
    for programme, status in rate.statuses:
        rows.append({"network": rate.network.title(), "month": rate.month, "programme": programme.name,
                     "threshold": f"{programme.ratio * 100:g} %" + (f" and {programme.min_count:,}"
                                                                   if programme.min_count else ""),
                     "rate now": f"{rate.ratio_for(programme) * 100:.2f} %", "count now": rate.count_for(programme),
                     "payments": rate.payments, "how it is counted": programme.note,
                     "status": {"ok": "below", "approaching": "approaching", "over": "over"}[status]})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
st.caption("A programme is entered when both its ratio and its count are reached. The console warns at 0.75 % "
           f"and at {da.APPROACH:.0%} of a programme's ratio, before it is crossed.")
