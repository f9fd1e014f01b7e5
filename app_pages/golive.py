"""Go-live page (admin only): the automated preflight, every runbook box with who
ticks it (machine: check, result, time of the last run; person: who and when, and
why no machine can), then the manual checklist as editable items."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from app_pages import _smoke_test
from app_pages._shared import require_admin, run_action, runtime, show_flash
from services import checklist, preflight, preflight_record, switches

identity = require_admin()
rt = runtime()
st.title("Go-live preflight & checklist")
st.caption(f"Stripe {rt.settings.stripe_mode} mode · the same checks as `billing-ops check`.")


@st.cache_data(ttl=60, show_spinner="Running the preflight ...")
def _preflight(actor: str) -> tuple[list[dict[str, Any]], str]:
    results, ran_at, _recorded = preflight_record.run_and_record(runtime(), actor=actor)
    return [result.to_dict() for result in results], ran_at.isoformat()


@st.cache_data(ttl=15, show_spinner=False)
def _items() -> list[dict[str, Any]]:
    checklist.seed_checklist(runtime().uow())
    return checklist.list_items(runtime().uow())


st.header("Preflight")
if st.button("Re-run preflight"):
    _preflight.clear()
results, ran_at_text = _preflight(identity.email)
st.caption(f"Last run: {ran_at_text[:19].replace('T', ' ')} UTC.")
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

items = _items()
st.header("Runbook boxes")
boxes = preflight_record.box_rows([preflight.CheckResult(**r) for r in results],
                                  datetime.fromisoformat(ran_at_text), items)
manual_open = [b for b in boxes if b["ticked_by"] == "person" and b["status"] == "open"]
machine = [b for b in boxes if b["ticked_by"] == "machine"]
st.markdown(f"**{len(boxes)} boxes** in both runbooks: {len(machine)} ticked by the machine "
            f"({sum(b['result'] == 'PASS' for b in machine)} passing), {len(boxes) - len(machine)} by a person "
            f"(**{len(manual_open)} still open**).")
st.dataframe(pd.DataFrame([{
    "box": b["box"], "runbook": b["runbook"], "§": b["section"], "text": b["text"], "ticked by": b["ticked_by"],
    "check / item": ", ".join(b["checks"]) if b["ticked_by"] == "machine" else b["item_title"],
    "result / status": b["result"] if b["ticked_by"] == "machine" else b["status"],
    "when": (b["ran_at"] if b["ticked_by"] == "machine" else b["ticked_at"]) or "",
    "who": "preflight" if b["ticked_by"] == "machine" else (b["ticked_by_who"] or ""),
    "why manual": b.get("why_manual", ""),
} for b in boxes]), hide_index=True)

_smoke_test.render(identity, on_change=_items.clear)

st.header("Checklist")
switch_states = switches.all_states(rt.uow())


def _control(key: str) -> str:
    """What performs a rollback item in the console, with the switch's live state."""
    bound = checklist.ROLLBACK_CONTROLS.get(key, "")
    kind, _, name = bound.partition(":")
    if kind == "page":
        return f"{name} page"
    if kind == "switch":
        state = switch_states[name]
        where = f"Launch controls: {name} switch "
        return where + (f"PAUSED by {state.by} since {state.since_text}" if state.paused else "running")
    return ""


for section, section_title in checklist.SECTIONS.items():
    st.subheader(section_title)
    section_items = [i for i in items if i["section"] == section]
    rows = [{"item": i["title"], "status": i["status"], "owner": i["owner"] or "",
             "note": i["note"] or "", "updated by": i["updated_by"] or "",
             "updated at": i["updated_at"], "why manual": i["why"]} for i in section_items]
    if section == "rollback":
        for row, item in zip(rows, section_items, strict=True):
            row["in the console"] = _control(item["key"])
            seed = checklist.SEED_BY_KEY.get(item["key"])  # the current instructions, not the seeded copy
            row["how"] = seed.detail if seed else item["detail"] or ""
    st.dataframe(pd.DataFrame(rows), hide_index=True)

st.subheader("Update an item")
show_flash("checklist", refused="Nothing was changed")
titles = {i["key"]: f"{checklist.SECTIONS[i['section']]}: {i['title']}" for i in items}
chosen = st.selectbox("Item", list(titles), format_func=lambda key: titles[key])
current = next((i for i in items if i["key"] == chosen), None)
if current is not None:
    st.caption(f"{current['detail'] or ''}  \nWhy manual: {current['why']}")
    with st.form("checklist_item"):
        owner = st.text_input("Owner", value=current["owner"] or "")
        status = st.selectbox("Status", checklist.STATUSES, index=checklist.STATUSES.index(current["status"]))
        note = st.text_area("Note", value=current["note"] or "")
        if st.form_submit_button("Save item"):
            run_action("checklist", lambda: checklist.update_item(chosen, owner=owner, status=status, note=note,
                                                                  actor=identity.email, settings=rt.settings,
                                                                  uow=rt.uow()),
                       f"Saved: {current['title']} is {status}.", after=_items.clear)
