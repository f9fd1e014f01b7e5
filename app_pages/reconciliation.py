"""Reconciliation page (admin only): run history, a run's actions, drift findings
with a confirmed fix, a dry-run button and the runbook's alert banner."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages import _charts
from app_pages._shared import fragment_user, plain, require_admin, run_action, runtime, show_error, show_flash
from services import lost_customers, reconciliation
from services.lost_customers import LostCustomer, ResubscribePlan
from services.reconciliation import LOST_CUSTOMER, ReconcileError, ReconcileReport
from services.stripe_gateway import StripeGatewayError

HISTORY_REFRESH_SECONDS = 30

identity = require_admin()
rt = runtime()
st.title("Reconciliation")
st.caption(
    f"Applies scheduled downgrades within {rt.settings.reconcile_cron_lookahead_seconds} s of the period end "
    f"and reports drift. Cron: {'on' if rt.settings.reconcile_cron_enabled else 'off'}, every "
    f"{rt.settings.reconcile_cron_interval_seconds} s."
)


@st.cache_data(ttl=15, show_spinner=False)
def _runs() -> list[dict[str, Any]]:
    return reconciliation.recent_runs(runtime().uow())


@st.cache_data(ttl=15, show_spinner=False)
def _actions(run_id: int) -> list[dict[str, Any]]:
    return reconciliation.run_actions(runtime().uow(), run_id)


@st.cache_data(ttl=15, show_spinner=False)
def _drift(mode: str, include_dismissed: bool) -> list[dict[str, Any]]:
    return reconciliation.latest_drift(runtime().uow(), mode=mode, include_dismissed=include_dismissed)


@st.cache_data(ttl=15, show_spinner=False)
def _lost(include_decided: bool) -> list[LostCustomer]:
    return lost_customers.lost_customers(runtime().uow(), include_decided=include_decided)


@st.cache_data(ttl=15, show_spinner=False)
def _last(mode: str) -> dict[str, Any] | None:
    return reconciliation.last_run(runtime().uow(), mode=mode)


@st.cache_data(ttl=15, show_spinner=False)
def _alert() -> str | None:
    return reconciliation.reconcile_alert(runtime().uow(), settings=runtime().settings)


def _refresh() -> None:
    _runs.clear()
    _actions.clear()
    _drift.clear()
    _last.clear()
    _lost.clear()
    _alert.clear()


alert = _alert()
if alert:
    st.error(f"Alert: {plain(alert)}")

def _dry_run() -> ReconcileReport:
    with st.spinner("Reading every subscription from Stripe..."):
        return reconciliation.run_now_dry_run(actor=identity.email, settings=rt.settings, uow=rt.uow(),
                                              gateway=rt.gateway)


if st.button("Run now (dry-run)", type="primary", help="Reads every subscription; changes nothing in Stripe."):
    run_action("dry_run", _dry_run,
               lambda report: f"Dry-run {report.run_id}: examined {report.examined}, would apply {report.planned} "
                              f"downgrade(s), found {report.drift} drift finding(s), {report.errors} error(s).",
               failure=lambda report: f"Run {report.run_id} stopped: {report.error}" if report.error else None,
               after=_refresh)
show_flash("dry_run", refused="The dry-run did not finish")


def _summary(run: dict[str, Any] | None, title: str, empty: str) -> None:
    st.markdown(f"**{title}**")
    if run is None:
        st.caption(empty)
        return
    st.caption(f"Run {run['run']} ({run['trigger']}, by {plain(run['actor'])}) finished "
               f"{run['finished']:%Y-%m-%d %H:%M} UTC" + (f" — stopped: {plain(run['error'])}" if run["error"] else ""))
    col1, col2, col3, col4 = st.columns(4)
    col1.metric("Examined", run["examined"])
    col2.metric("Applied" if run["mode"] == "apply" else "Would apply", run["applied"])
    col3.metric("Drift", run["drift"])
    col4.metric("Errors", run["errors"])


left, right = st.columns(2)
with left:
    _summary(_last("apply"), "Last applied run", "No run has applied anything yet (cron, or `reconcile --apply`).")
with right:
    _summary(_last("dry-run"), "Latest dry-run", "No dry-run yet.")

st.subheader("Run history")


# The cron adds runs every few minutes; refresh just this part, not the page.
@st.fragment(run_every=HISTORY_REFRESH_SECONDS)
def _history() -> None:
    if fragment_user() is None:  # the session ended while the page was open
        return
    runs = _runs()
    if not runs:
        st.info("No reconciliation runs yet. Use “Run now (dry-run)” or start the worker with "
                "RECONCILE_CRON_ENABLED.")
        return
    history = pd.DataFrame(runs)
    if len(history) > 1:
        chart = px.bar(history.sort_values("run"), x="run", y=["applied", "drift", "errors"], barmode="group",
                       labels={"value": "count", "variable": ""}, height=240)
        st.plotly_chart(_charts.counts(chart), use_container_width=True)
    st.dataframe(history, hide_index=True, width="stretch")
    run_ids = [run["run"] for run in runs]
    chosen = st.selectbox("Show the actions of run", run_ids, index=0, key="run_choice")
    actions = _actions(int(chosen)) if chosen is not None else []
    if actions:
        st.dataframe(pd.DataFrame(actions), hide_index=True, width="stretch")
    else:
        st.caption(f"Run {chosen} had no actions: no downgrade was due and nothing drifted.")


_history()

st.subheader("Drift findings")
show_dismissed = st.toggle("Show dismissed findings", value=False, key="show_dismissed")
drift_sets = [(f"last applied run #{run['run']}", _drift("apply", show_dismissed))
              for run in [_last("apply")] if run is not None]
drift_sets += [(f"latest dry-run #{run['run']}", _drift("dry-run", show_dismissed))
               for run in [_last("dry-run")] if run is not None]
if not drift_sets:
    st.info("No finished reconciliation run yet.")
open_findings: list[dict[str, Any]] = []
for source, rows in drift_sets:
    st.markdown(f"**Findings of the {source}**")
    if not rows:
        st.success(f"No open drift in the {source}.")
        continue
    columns = ["action", "subscription", "kind", "result", "before", "after", "fix"]
    if show_dismissed:
        columns.append("dismissed")
    st.dataframe(pd.DataFrame(rows)[columns], hide_index=True, width="stretch")
    # Lost customers have their own section below (re-subscribe or mark handled).
    open_findings += [row for row in rows if row["result"] == "reported" and row["kind"] != LOST_CUSTOMER
                      and row["action"] not in {f["action"] for f in open_findings}]


def _close_fix() -> None:
    st.session_state.pop("fix_target", None)


@st.dialog("Apply this fix?", on_dismiss=_close_fix)
def _confirm_fix(finding: dict[str, Any]) -> None:
    st.write(f"Subscription **{plain(finding['subscription'])}** (Stripe {rt.settings.stripe_mode} mode)")
    st.write(f"Finding: {plain(finding['kind'])} — {plain(finding['after'])}")
    st.write(f"What will happen: {plain(finding['fix'])}")
    col1, col2 = st.columns(2)
    if col1.button("Apply fix", type="primary", key="confirm_fix"):
        run_action("fix", lambda: reconciliation.apply_drift_fix(int(finding["action"]), actor=identity.email,
                                                                 settings=rt.settings, uow=rt.uow(),
                                                                 gateway=rt.gateway),
                   lambda result: f"Fixed #{result.action_id} ({plain(result.kind)}).",
                   before=_close_fix, after=_refresh)
    if col2.button("Cancel", key="cancel_fix"):
        st.session_state.pop("fix_target", None)
        st.rerun()


def _label(row: dict[str, Any]) -> str:
    return f"#{row['action']} {row['subscription']} — {row['kind']}"


fixable = [row for row in open_findings if row["fixable"]]
if fixable:
    labels = {row["action"]: _label(row) for row in fixable}
    choice = st.selectbox("Finding to fix", list(labels), format_func=lambda a: labels[a], key="drift_choice")
    if st.button("Apply this fix…", key="open_fix"):
        st.session_state["fix_target"] = choice
    target = st.session_state.get("fix_target")
    if target is not None:
        finding = next((row for row in fixable if row["action"] == target), None)
        if finding is None:
            st.session_state.pop("fix_target", None)
        else:
            _confirm_fix(finding)
if open_findings:
    with st.form("dismiss_finding", clear_on_submit=True):
        dismiss_labels = {row["action"]: _label(row) for row in open_findings}
        dismiss_choice = st.selectbox("Finding to dismiss", list(dismiss_labels),
                                      format_func=lambda a: dismiss_labels[a])
        reason = st.text_input("Reason (required)", placeholder="e.g. legacy price kept on purpose for this customer")
        if st.form_submit_button("Dismiss finding"):
            run_action("fix", lambda: reconciliation.dismiss_finding(int(dismiss_choice), reason, actor=identity.email,
                                                                     settings=rt.settings, uow=rt.uow()),
                       f"Dismissed #{dismiss_choice}.", after=_refresh)

st.subheader("Lost customers")
st.caption("Subscriptions Stripe ended while their downgrade was still pending: the customer asked for a cheaper "
           "plan and was cancelled instead. A downgrade can no longer be applied to them.")
show_decided = st.toggle("Show re-subscribed and handled", value=False, key="show_lost_decided")
lost = _lost(show_decided)
if not lost:
    st.success("No lost customers in the latest run.")
else:
    st.dataframe(pd.DataFrame([row.as_row() for row in lost]), hide_index=True, width="stretch")
    open_lost = {row.action_id: row for row in lost if row.result == "reported"}
    if open_lost:
        lost_choice = st.selectbox(
            "Lost customer", list(open_lost), key="lost_choice",
            format_func=lambda a: f"#{a} {open_lost[a].customer_email or open_lost[a].customer_id} — "
                                  f"{open_lost[a].subscription_id}",
        )

        def _close_resubscribe() -> None:
            st.session_state.pop("resubscribe_plan", None)

        @st.dialog("Re-subscribe this customer?", on_dismiss=_close_resubscribe)
        def _confirm_resubscribe(plan: ResubscribePlan) -> None:
            who = plan.lost
            st.markdown(f"Stripe **{plan.mode}** mode")
            st.text(f"Customer: {who.customer_name or ''} <{who.customer_email or '?'}> ({who.customer_id})")
            st.text(f"Creates a new subscription on {who.pending_plan} {who.pending_interval} at {plan.amount_text}, "
                    f"charged to the customer's default payment method ({plan.payment_method}).")
            st.text(f"The old subscription {who.subscription_id} ended {who.ended_text}; it stays ended.")
            st.caption(f"Idempotency key: {plan.idempotency_key}")
            col1, col2 = st.columns(2)
            if col1.button("Re-subscribe", type="primary", key="confirm_resubscribe"):
                run_action("fix", lambda: lost_customers.resubscribe_lost_customer(
                               plan.lost.action_id, actor=identity.email, settings=rt.settings, uow=rt.uow(),
                               gateway=rt.gateway),
                           lambda done: f"Re-subscribed: {done.new_subscription_id} on {done.plan} ({done.status}), "
                                        f"replacing {done.old_subscription_id}.",
                           before=_close_resubscribe, after=_refresh)
            if col2.button("Cancel", key="cancel_resubscribe"):
                st.session_state.pop("resubscribe_plan", None)
                st.rerun()

        if st.button("Re-subscribe on the pending plan…", key="open_resubscribe"):
            st.session_state.pop("resubscribe_plan", None)
            try:
                st.session_state["resubscribe_plan"] = lost_customers.plan_resubscribe(
                    int(lost_choice), settings=rt.settings, uow=rt.uow(), gateway=rt.gateway)
            except (StripeGatewayError, ReconcileError) as error:
                show_error(error)
        resubscribe_plan: ResubscribePlan | None = st.session_state.get("resubscribe_plan")
        if resubscribe_plan is not None:
            _confirm_resubscribe(resubscribe_plan)
        with st.form("lost_handled", clear_on_submit=True):
            handled_reason = st.text_input("How was it handled? (required)",
                                           placeholder="e.g. called the customer; they moved to annual invoicing")
            if st.form_submit_button("Mark handled"):
                run_action("fix", lambda: lost_customers.mark_lost_customer_handled(
                               int(lost_choice), handled_reason, actor=identity.email, settings=rt.settings,
                               uow=rt.uow()),
                           f"Marked #{lost_choice} handled.", after=_refresh)

show_flash("fix", refused="The fix was not applied")

st.subheader("QA / test clocks")
qa_runs = reconciliation.recent_runs(rt.uow(), qa=True)
if qa_runs:
    st.caption("Runs started by the plan-change QA matrix (test clocks). They are kept out of the history above, "
               "its drift findings and the alerts.")
    st.dataframe(pd.DataFrame(qa_runs), hide_index=True, width="stretch")
else:
    st.caption("No QA-matrix reconciliation runs.")
