"""Audit log (admin): the append-only record of every privileged action and denial."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pandas as pd
import streamlit as st

from app_pages._shared import require_admin, runtime
from services import audit, exports

identity = require_admin()
rt = runtime()

st.title("Audit log")
st.caption("Every refund, evidence submission, acceptance, ignore, reconcile apply, replay and sign-off, "
           "and every denied attempt. Rows are hash-chained (HMAC with AUDIT_HMAC_KEY) and each snapshot and "
           "sign-off freezes the chain's head, so an edit, a re-hash or deleting the newest rows shows.")

verification = audit.verify_chain(rt.uow())
if verification.ok:
    keyed = "keyed with AUDIT_HMAC_KEY" if verification.keyed else "unkeyed: set AUDIT_HMAC_KEY so a full re-hash shows"
    st.success(f"Chain verified: {verification.rows_checked} rows ({keyed}), no edits or deletions; "
               f"{verification.anchors_checked} anchored head(s) from snapshots and sign-offs still in place.")
else:
    st.error(f"Chain broken at row {verification.first_broken_id}: {verification.problem}. "
             f"{verification.rows_checked} rows before it verified.")

choices = audit.distinct_values(rt.uow())
with st.form("audit_filters"):
    col1, col2, col3 = st.columns(3)
    actor = col1.text_input("Actor contains")
    action = col2.selectbox("Action", ["(any)", *choices["actions"]])
    result = col3.selectbox("Result", ["(any)", *choices["results"]])
    col4, col5, col6 = st.columns(3)
    target = col4.text_input("Target contains")
    today = datetime.now(UTC).date()
    since = col5.date_input("From", value=today - timedelta(days=30))
    until = col6.date_input("To", value=today)
    st.form_submit_button("Apply filters")

if since > until:
    st.error("'From' must be on or before 'To'.")
    st.stop()

entries = audit.list_entries(
    rt.uow(),
    audit.AuditFilter(
        actor=actor or None,
        action=None if action == "(any)" else action,
        target=target or None,
        result=None if result == "(any)" else result,
        since=datetime.combine(since, time.min, UTC),
        until=datetime.combine(until, time.max, UTC),
        limit=2000,
    ),
)
if not entries:
    st.info("No audit entries match these filters yet.")
    st.stop()

plain_rows = audit.entries_as_rows(entries)
rows = pd.DataFrame(plain_rows)
rows = rows[["result", *[column for column in rows.columns if column != "result"]]]  # the outcome first
denied = int((rows["result"] == "denied").sum())
st.metric("Entries shown", len(rows), help="Newest first; at most 2,000 per view.")
if denied:
    st.warning(f"{denied} denied attempt(s) in this view.")
st.dataframe(rows, hide_index=True, width="stretch")
st.download_button(
    "Download CSV",
    exports.csv_bytes(plain_rows, audit.AUDIT_CSV_COLUMNS),
    file_name=f"audit-log-{today.isoformat()}.csv",
    mime="text/csv",
)
