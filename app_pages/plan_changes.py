"""Plan changes page (admin only): look a customer up, preview a change with its
proration, apply it (upgrade now / downgrade at period end), see pending downgrades."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pandas as pd
import streamlit as st

from app_pages._shared import (
    plain,
    require_admin,
    run_action,
    runtime,
    show_error,
    show_flash,
    stripe_dashboard_url,
)
from services import plan_change_queries, plan_changes, plan_preview
from services.auth import AccessDenied
from services.money import format_money as _money
from services.plan_changes import PlanChangeError, ScheduleConfirmation
from services.plan_preview import ChangePreview
from services.stripe_gateway import StripeGatewayError

identity = require_admin()
rt = runtime()
ERRORS = (AccessDenied, PlanChangeError, StripeGatewayError)
st.title("Plan changes")
st.caption("Upgrades are immediate and invoiced with proration; downgrades are scheduled for the period end "
           "(cancel_at_period_end + metadata.pending_plan) and applied by reconciliation.")


@st.cache_data(ttl=15, show_spinner=False)
def _lookup(term: str) -> list[dict[str, Any]]:
    return [vars(s) for s in plan_change_queries.find_subscriptions(runtime().uow(), term)]


@st.cache_data(ttl=15, show_spinner=False)
def _pending() -> list[dict[str, Any]]:
    return [vars(s) for s in plan_change_queries.pending_downgrades(runtime().uow())]


@st.cache_data(ttl=15, show_spinner=False)
def _history(subscription_id: str) -> list[dict[str, Any]]:
    return plan_change_queries.plan_history(runtime().uow(), subscription_id)


def _refresh() -> None:
    st.session_state.pop("confirming", None)
    st.session_state.pop("schedule_confirm", None)
    _lookup.clear()
    _pending.clear()
    _history.clear()
    st.session_state.pop("preview", None)


show_flash("plan", refused="Nothing was changed")

with st.form("lookup"):
    # A search hit or a shared link opens with its customer or subscription looked up.
    linked = st.query_params.get("subscription") or st.query_params.get("customer") or ""
    term = st.text_input("Customer email, customer id (cus_…) or subscription id (sub_…)", value=linked)
    st.form_submit_button("Look up")

subscription_id: str | None = None
if term.strip():
    found = _lookup(term.strip())
    if not found and term.strip().startswith("sub_"):
        # Not mirrored yet (e.g. a missed webhook): Stripe is still the source of truth.
        st.info(f"{plain(term.strip())} is not in the billing DB yet; changes go to Stripe and store it.")
        subscription_id = term.strip()
    elif not found:
        st.info(f"No subscription in the billing DB matches “{plain(term.strip())}”.")
    else:
        st.dataframe(pd.DataFrame(found), hide_index=True, width="stretch")
        subscription_id = st.selectbox("Subscription", [row["subscription_id"] for row in found])

if subscription_id:
    current = next((row for row in _lookup(term.strip()) if row["subscription_id"] == subscription_id),
                   {"pending_plan": None, "current_period_end": None})
    dashboard = stripe_dashboard_url(f"subscriptions/{quote(subscription_id, safe='')}")
    st.markdown(f"[Open {plain(subscription_id)} in the Stripe Dashboard](<{dashboard}>)")
    if current["pending_plan"]:
        st.warning(f"Pending downgrade to **{plain(current['pending_plan'])}** at the period end "
                   f"({plain(current['current_period_end'])}).")
    choices = plan_change_queries.plan_choices(rt.settings)
    if not choices:
        st.error("No plan prices are configured (STRIPE_PRICE_<PLAN>_<INTERVAL>).")
    else:
        with st.form("change"):
            col1, col2 = st.columns(2)
            plan = col1.selectbox("New plan", list(choices))
            interval = col2.selectbox("Interval", sorted({i for intervals in choices.values() for i in intervals}))
            preview_clicked = st.form_submit_button("Preview change")
        if preview_clicked:
            try:
                st.session_state["preview"] = plan_preview.preview_change(
                    subscription_id, plan, interval, settings=rt.settings, uow=rt.uow(), gateway=rt.gateway
                )
            except ERRORS as error:
                st.session_state.pop("preview", None)
                show_error(error)

    preview: ChangePreview | None = st.session_state.get("preview")
    if preview is not None and preview.subscription_id == subscription_id:
        st.subheader(f"Preview: {plain(preview.current_plan or '?')} {plain(preview.current_interval or '')} → "
                     f"{plain(preview.target_plan)} {plain(preview.target_interval)} ({preview.direction}, "
                     f"{preview.effective})")
        col1, col2 = st.columns(2)
        col1.metric("Proration invoiced now", _money(preview.proration_amount, preview.currency))
        col2.metric("Preview invoice amount due", _money(preview.amount_due, preview.currency))
        if preview.lines:
            st.dataframe(pd.DataFrame([{"description": line.description,
                                        "amount": _money(line.amount, preview.currency),
                                        "proration": line.proration} for line in preview.lines]),
                         hide_index=True, width="stretch")

        @st.dialog("Confirm plan change")
        def _confirm(p: ChangePreview) -> None:
            if p.direction == "upgrade":
                st.write(f"Upgrade **{plain(p.subscription_id)}** to "
                         f"**{plain(p.target_plan)} {plain(p.target_interval)}** now. Stripe "
                         f"invoices the proration of **{_money(p.proration_amount, p.currency)}** immediately "
                         f"({rt.settings.stripe_mode} mode).")
            else:
                st.write(f"Schedule a downgrade of **{plain(p.subscription_id)}** to **{plain(p.target_plan)} "
                         f"{plain(p.target_interval)}** at the period end "
                         f"({plan_change_queries.period_end_text(p.period_end)}); no proration credit "
                         f"({rt.settings.stripe_mode} mode).")
            st.text(f"Customer: {plan_change_queries.customer_label(rt.uow(), p.customer_id)}")  # plain text
            col1, col2 = st.columns(2)
            if col1.button("Confirm", type="primary", key="confirm_change"):
                change = plan_changes.upgrade if p.direction == "upgrade" else plan_changes.schedule_downgrade
                run_action("plan", lambda: change(p.subscription_id, p.target_plan, p.target_interval,
                                                  actor=identity.email, settings=rt.settings, uow=rt.uow(),
                                                  gateway=rt.gateway),
                           lambda result: f"{result.kind.replace('_', ' ').capitalize()}: "
                                          f"{plain(result.subscription_id)} → {plain(result.to_plan)}.",
                           before=lambda: st.session_state.pop("confirming", None), after=_refresh)
            if col2.button("Cancel", key="cancel_change"):
                st.session_state.pop("confirming", None)
                st.rerun()

        if preview.direction == "same":
            st.info("The subscription is already on this price.")
        elif st.button("Apply this change…", type="primary"):
            st.session_state["confirming"] = True
        if st.session_state.get("confirming"):
            _confirm(preview)

    st.subheader("Schedule and cancellation")
    col1, col2, col3 = st.columns(3)
    actions = {
        "downgrade_canceled": ("Cancel the scheduled downgrade", col1, plan_changes.cancel_scheduled_downgrade),
        "cancel": ("Cancel at period end", col2, plan_changes.cancel_at_period_end),
        "resume": ("Resume (undo cancellation)", col3, plan_changes.resume),
    }

    def _close_schedule() -> None:
        st.session_state.pop("schedule_confirm", None)

    @st.dialog("Confirm this change?", on_dismiss=_close_schedule)
    def _confirm_schedule(c: ScheduleConfirmation) -> None:
        label, _column, action = actions[c.kind]
        st.markdown(f"**{label}** — Stripe **{c.mode}** mode")
        st.text(f"Customer: {c.customer}")  # customer-controlled: plain text
        st.text(c.what)
        st.text(f"Amount: {c.amount_text}")
        col1, col2 = st.columns(2)
        if col1.button("Confirm", type="primary", key="confirm_schedule"):
            run_action("plan", lambda: action(c.subscription_id, actor=identity.email, settings=rt.settings,
                                              uow=rt.uow(), gateway=rt.gateway),
                       lambda result: f"{label}: done for {plain(result.subscription_id)}.",
                       before=_close_schedule, after=_refresh)
        if col2.button("Cancel", key="cancel_schedule"):
            st.session_state.pop("schedule_confirm", None)
            st.rerun()

    for kind, (label, column, _action) in actions.items():
        if column.button(f"{label}…", key=f"act_{kind}"):
            st.session_state.pop("schedule_confirm", None)
            try:
                st.session_state["schedule_confirm"] = plan_changes.describe_schedule_change(
                    kind, subscription_id, settings=rt.settings, uow=rt.uow(), gateway=rt.gateway
                )
            except ERRORS as error:
                show_error(error)
    pending_confirm: ScheduleConfirmation | None = st.session_state.get("schedule_confirm")
    if pending_confirm is not None and pending_confirm.subscription_id == subscription_id:
        _confirm_schedule(pending_confirm)
    history = _history(subscription_id)
    if history:
        st.caption("Plan history")
        st.dataframe(pd.DataFrame(history), hide_index=True, width="stretch")

st.subheader("Pending downgrades")
pending = _pending()
if pending:
    st.dataframe(pd.DataFrame(pending), hide_index=True, width="stretch")
else:
    st.caption("No downgrades are scheduled.")
