"""First 24 hours: the figures Numzy §13 names, with the rows behind them (widgets only;
services/launch_figures.py computes them). Test-clock, QA and smoke-test activity is left out."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from app_pages._shared import plain, run_action, runtime, show_flash
from services import launch_figures
from services.auth import Identity
from services.metric_labels import percent

LINK = st.column_config.LinkColumn("open", display_text="Plan changes")


def _ratio(part: int | None, whole: int | None, share: float | None) -> str:
    if part is None or whole is None:
        return "n/a"
    return f"{part} / {whole} ({percent(share)})"


def render(identity: Identity, start: datetime, end: datetime) -> None:
    rt = runtime()
    st.subheader("Launch figures (runbook §13)")
    st.caption("New-subscription success, downgrades applied against those due, and every plan-change error to "
               "work through. Test-clock, QA-matrix and smoke-test activity is left out.")
    rate = launch_figures.success_rate(rt.uow(), rt.gateway, start=start, end=end)
    due = launch_figures.downgrades(rt.uow(), start=start, end=end)
    errors = launch_figures.change_errors(rt.uow(), start=start, end=end)
    open_errors = [e for e in errors if not e["resolved"]]
    col1, col2, col3, col4 = st.columns(4)
    col1.metric("Checkout completed / created",
                _ratio(rate.sessions_completed, rate.sessions_created, rate.checkout_rate),
                help="Checkout Sessions created in this range (read from Stripe) that were completed")
    col2.metric("Subscriptions active / created",
                _ratio(rate.subscriptions_active, rate.subscriptions_created, rate.activation_rate),
                help="Subscriptions started in this range whose first invoice was paid (not incomplete)")
    col3.metric("Downgrades applied / due", f"{due.applied} / {due.due}",
                help="Applied by reconciliation, against those whose period ended in this range")
    col4.metric("Plan-change errors open", f"{len(open_errors)} of {len(errors)}")
    if rate.sessions_error:
        st.warning(f"Checkout Sessions could not be read from Stripe: {plain(rate.sessions_error)}")

    st.markdown("**Incomplete subscriptions** (first payment not made)")
    if rate.incomplete:
        st.dataframe(pd.DataFrame(rate.incomplete), hide_index=True, column_config={"link": LINK})
    else:
        st.caption("None in this range.")
    st.markdown("**Downgrades due and not applied**")
    if due.not_applied:
        st.dataframe(pd.DataFrame(due.not_applied), hide_index=True, column_config={"link": LINK})
    else:
        st.caption("None in this range.")
    st.markdown("**Plan-change errors**")
    if not errors:
        st.caption("None in this range.")
        return
    st.dataframe(pd.DataFrame([{k: e[k] for k in ("id", "at", "action", "subscription", "email", "error", "link",
                                                   "resolved", "resolved_by", "note")} for e in errors]),
                 hide_index=True, column_config={"link": LINK})
    show_flash("change_error", refused="Nothing was changed")
    if not open_errors:
        return
    with st.form("resolve_change_error"):
        labels = {e["id"]: f"#{e['id']} · {e['subscription'] or '-'} · {e['error'][:80]}" for e in open_errors}
        chosen = st.selectbox("Error", list(labels), format_func=labels.__getitem__)
        note = st.text_input("How it was resolved (required)")
        if st.form_submit_button("Mark resolved"):
            run_action("change_error", lambda: launch_figures.resolve_change_error(
                int(chosen), note, actor=identity.email, settings=rt.settings, uow=rt.uow()),
                f"Error #{chosen} marked resolved.")
