"""Go-live page (admin only): the automated preflight, then the manual checklist
and the rollback plan as editable items (owner, status, note, who/when)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app_pages._shared import require_admin, runtime, show_error
from services import checklist, preflight
from services.auth import AccessDenied
from services.checklist import ChecklistError

identity = require_admin()
rt = runtime()
st.title("Go-live preflight & checklist")
st.caption(f"Stripe {rt.settings.stripe_mode} mode · the same checks as `billing-ops check`.")


@st.cache_data(ttl=60, show_spinner="Running the preflight ...")
def _preflight() -> list[dict[str, Any]]:
    return [result.to_dict() for result in preflight.run_preflight(runtime())]


@st.cache_data(ttl=15, show_spinner=False)
def _items() -> list[dict[str, Any]]:
    checklist.seed_checklist(runtime().uow())
    return checklist.list_items(runtime().uow())


st.header("Preflight")
if st.button("Re-run preflight"):
    _preflight.clear()
results = _preflight()
blocking = [r for r in results if not r["passed"] and r["severity"] == "blocking"]
warnings = [r for r in results if not r["passed"] and r["severity"] == "warning"]
if blocking:
    st.error(f"Not ready: {len(blocking)} blocking failure(s): {', '.join(r['id'] for r in blocking)}.")
else:
    st.success(f"Ready: no blocking failures ({len(warnings)} warning(s)).")
for result in blocking + warnings:
    box = st.error if result["severity"] == "blocking" else st.warning
    box(f"**{result['id']}** — {result['message']}  \nFix: {result['fix']}")
table = pd.DataFrame([{"check": r["id"], "severity": r["severity"], "result": preflight.status_word(
    preflight.CheckResult(**r)), "message": r["message"]} for r in results])
st.dataframe(table, hide_index=True)

st.header("Checklist")
items = _items()
for section, section_title in checklist.SECTIONS.items():
    st.subheader(section_title)
    section_items = [i for i in items if i["section"] == section]
    st.dataframe(pd.DataFrame([{"item": i["title"], "status": i["status"], "owner": i["owner"] or "",
                                "note": i["note"] or "", "updated by": i["updated_by"] or "",
                                "updated at": i["updated_at"]} for i in section_items]),
                 hide_index=True)

st.subheader("Update an item")
titles = {i["key"]: f"{checklist.SECTIONS[i['section']]}: {i['title']}" for i in items}
chosen = st.selectbox("Item", list(titles), format_func=lambda key: titles[key])
current = next((i for i in items if i["key"] == chosen), None)
if current is not None:
    st.caption(current["detail"] or "")
    with st.form("checklist_item"):
        owner = st.text_input("Owner", value=current["owner"] or "")
        status = st.selectbox("Status", checklist.STATUSES, index=checklist.STATUSES.index(current["status"]))
        note = st.text_area("Note", value=current["note"] or "")
        if st.form_submit_button("Save item"):
            try:
                checklist.update_item(chosen, owner=owner, status=status, note=note, actor=identity.email,
                                      settings=rt.settings, uow=rt.uow())
            except (ChecklistError, AccessDenied) as error:
                show_error(error)
            else:
                _items.clear()
                st.success(f"Saved: {current['title']} is {status}.")
                st.rerun()
