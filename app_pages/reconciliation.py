"""Reconciliation page (admin only): run history, a run's actions, drift findings
with a confirmed fix, a dry-run button and the runbook's alert banner."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages._shared import fragment_user, require_admin, runtime, show_error
from services import reconciliation
from services.auth import AccessDenied
from services.reconciliation import ReconcileError
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
def _drift() -> list[dict[str, Any]]:
    return reconciliation.latest_drift(runtime().uow())


@st.cache_data(ttl=15, show_spinner=False)
def _alert() -> str | None:
    return reconciliation.reconcile_alert(runtime().uow(), settings=runtime().settings)


def _refresh() -> None:
    _runs.clear()
    _actions.clear()
    _drift.clear()
    _alert.clear()


alert = _alert()
if alert:
    st.error(f"Alert: {alert}")

if st.button("Run now (dry-run)", type="primary", help="Reads every subscription; changes nothing in Stripe."):
    try:
        with st.spinner("Reading every subscription from Stripe..."):
            report = reconciliation.run_now_dry_run(actor=identity.email, settings=rt.settings, uow=rt.uow(),
                                                    gateway=rt.gateway)
        _refresh()
        if report.error:
            st.error(f"Run {report.run_id} stopped: {report.error}")
        else:
            st.success(
                f"Dry-run {report.run_id}: examined {report.examined}, would apply {report.planned} downgrade(s), "
                f"found {report.drift} drift finding(s), {report.errors} error(s)."
            )
    except (AccessDenied, StripeGatewayError, ReconcileError) as error:
        show_error(error)

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
        st.plotly_chart(chart, use_container_width=True)
    st.dataframe(history, hide_index=True, width="stretch")
    run_ids = [run["run"] for run in runs]
    chosen = st.selectbox("Show the actions of run", run_ids, index=0, key="run_choice")
    actions = _actions(int(chosen)) if chosen is not None else []
    if actions:
        st.dataframe(pd.DataFrame(actions), hide_index=True, width="stretch")
    else:
        st.caption(f"Run {chosen} had no actions: no downgrade was due and nothing drifted.")


_history()

st.subheader("Drift findings (latest run)")
drift = _drift()
if not drift:
    st.success("No drift in the latest run.")
else:
    frame = pd.DataFrame(drift)[["action", "subscription", "kind", "result", "before", "after", "fix"]]
    st.dataframe(frame, hide_index=True, width="stretch")
    open_findings = [row for row in drift if row["result"] == "reported"]
    if open_findings:
        labels = {row["action"]: f"#{row['action']} {row['subscription']} — {row['kind']}" for row in open_findings}
        choice = st.selectbox("Finding to fix", list(labels), format_func=lambda a: labels[a], key="drift_choice")

        @st.dialog("Apply this fix?")
        def _confirm_fix(finding: dict[str, Any]) -> None:
            st.write(f"Subscription **{finding['subscription']}** (Stripe {rt.settings.stripe_mode} mode)")
            st.write(f"Finding: {finding['kind']} — {finding['after']}")
            st.write(f"What will happen: {finding['fix']}")
            col1, col2 = st.columns(2)
            if col1.button("Apply fix", type="primary", key="confirm_fix"):
                st.session_state.pop("fix_target", None)
                try:
                    result = reconciliation.apply_drift_fix(int(finding["action"]), actor=identity.email,
                                                            settings=rt.settings, uow=rt.uow(), gateway=rt.gateway)
                    st.session_state["fix_message"] = f"Fixed #{result.action_id} ({result.kind})."
                except (AccessDenied, StripeGatewayError, ReconcileError) as error:
                    st.session_state["fix_error"] = getattr(error, "message", str(error))
                _refresh()
                st.rerun()
            if col2.button("Cancel", key="cancel_fix"):
                st.session_state.pop("fix_target", None)
                st.rerun()

        if st.button("Apply this fix…", key="open_fix"):
            st.session_state["fix_target"] = choice
        target = st.session_state.get("fix_target")
        if target is not None:
            finding = next((row for row in open_findings if row["action"] == target), None)
            if finding is None:
                st.session_state.pop("fix_target", None)
            else:
                _confirm_fix(finding)
message = st.session_state.pop("fix_message", None)
if message:
    st.success(message)
fix_error = st.session_state.pop("fix_error", None)
if fix_error:
    st.error(f"The fix was not applied: {fix_error}")

st.subheader("QA / test clocks")
qa_runs = reconciliation.recent_runs(rt.uow(), qa=True)
if qa_runs:
    st.caption("Runs started by the plan-change QA matrix (test clocks). They are kept out of the history above, "
               "its drift findings and the alerts.")
    st.dataframe(pd.DataFrame(qa_runs), hide_index=True, width="stretch")
else:
    st.caption("No QA-matrix reconciliation runs.")
