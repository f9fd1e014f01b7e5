"""QA matrix page (admin only): run the runbook's 8 plan-change cases against
Stripe test mode with a progress bar, read each case's evidence, record a
manual result with notes."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app_pages._shared import plain, require_admin, run_action, runtime, show_flash
from services import qa_matrix
from services.qa_matrix import QaRunSummary

identity = require_admin()
rt = runtime()
st.title("Plan-change QA matrix")
version = qa_matrix.code_version()
st.caption(f"Code version {version} · Stripe {rt.settings.stripe_mode} mode · each case uses its own test clock "
           "and customer.")


@st.cache_data(ttl=15, show_spinner=False)
def _latest(code: str) -> dict[str, dict[str, Any]]:
    return qa_matrix.latest_results(runtime().uow(), version=code)


@st.cache_data(ttl=15, show_spinner=False)
def _runs() -> list[dict[str, Any]]:
    return qa_matrix.recent_runs(runtime().uow())


def _refresh() -> None:
    _latest.clear()
    _runs.clear()


if rt.settings.stripe_mode == "live":
    st.warning("Live mode: the QA matrix is refused here (it creates customers and charges test cards). "
               "Record manual results below instead.")

with st.form("qa_run"):
    chosen = st.multiselect("Cases to run (empty = all 8)", list(qa_matrix.CASE_IDS),
                            format_func=lambda c: qa_matrix.CASES_BY_ID[c].title)
    run_clicked = st.form_submit_button("Run QA matrix", type="primary",
                                        disabled=rt.settings.stripe_mode == "live")
if run_clicked:
    bar = st.progress(0.0, text="Starting ...")

    def _progress(done: int, total: int, case_id: str, status: str) -> None:
        title = qa_matrix.CASES_BY_ID[case_id].title
        text = f"Running {title} ({done + 1}/{total})" if status == "running" else f"{title}: {status}"
        bar.progress(done / total, text=text)

    def _summary_text(summary: QaRunSummary) -> str:
        ok = sum(o.status == "passed" for o in summary.outcomes)
        failed = [f"{qa_matrix.CASES_BY_ID[o.case_id].title}: expected {o.failed_expectation}"
                  for o in summary.outcomes if o.failed_expectation]
        return " ".join([f"QA run {summary.run_id}: {ok}/{len(summary.outcomes)} passed.", *failed])

    run_action("qa_run", lambda: qa_matrix.start_qa_run(chosen or None, actor=identity.email, settings=rt.settings,
                                                        uow=rt.uow(), runtime=rt, progress=_progress),
               _summary_text, failure=lambda summary: None if summary.passed else _summary_text(summary),
               after=_refresh)
show_flash("qa_run", refused="The QA matrix did not pass")

latest = _latest(version)
passed = sum(1 for r in latest.values() if r["status"] in qa_matrix.PASSED_STATUSES)
st.metric("Cases passed at this code version", f"{passed}/{len(qa_matrix.CASES)}")
st.dataframe(pd.DataFrame([{
    "case": case.title, "steps": case.steps, "expected": case.expected,
    "result": latest[case.id]["status"] if case.id in latest else "not run",
    "failed expectation": (latest.get(case.id) or {}).get("failed_expectation") or "",
    "by": (latest.get(case.id) or {}).get("actor") or "",
} for case in qa_matrix.CASES]), hide_index=True)

st.header("Evidence")
if latest:
    case_id = st.selectbox("Case", [c for c in qa_matrix.CASE_IDS if c in latest],
                           format_func=lambda c: qa_matrix.CASES_BY_ID[c].title)
    result = latest[case_id]
    st.write(f"**{plain(result['status'])}** by {plain(result['actor'])} at {plain(result['at'])}"
             + (f" in {result['duration_ms'] / 1000:.1f} s" if result["duration_ms"] else ""))
    if result["failed_expectation"]:
        st.error(f"Failed expectation: {plain(result['failed_expectation'])}")
    if result["notes"]:
        st.info(f"Notes: {plain(result['notes'])}")
    evidence = result["evidence"] or {}
    if evidence.get("expectations"):
        st.dataframe(pd.DataFrame(evidence["expectations"]).astype(str), hide_index=True,
                     width="stretch")
    with st.expander("Ids, events and timings"):
        st.json({k: evidence.get(k) for k in ("ids", "events", "timings_ms", "notes") if k in evidence})
else:
    st.info("No results yet at this code version.")

st.header("Record a manual result")
with st.form("qa_manual"):
    manual_case = st.selectbox("Case ", list(qa_matrix.CASE_IDS), format_func=lambda c: qa_matrix.CASES_BY_ID[c].title)
    outcome_word = st.radio("Result", ["pass", "fail"], horizontal=True)
    notes = st.text_area("Notes (what you did and saw)")
    if st.form_submit_button("Record result"):
        run_action("qa_manual", lambda: qa_matrix.record_manual_result(
                       manual_case, outcome_word == "pass", notes, actor=identity.email, settings=rt.settings,
                       uow=rt.uow()),
                   f"Recorded a manual {outcome_word} for {qa_matrix.CASES_BY_ID[manual_case].title}.",
                   after=_refresh)
show_flash("qa_manual", refused="The result was not recorded")

st.header("Recent runs")
runs = _runs()
if runs:
    st.dataframe(pd.DataFrame(runs), hide_index=True)
