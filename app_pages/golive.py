"""Go-live page (admin only): the last recorded preflight and its age (Run preflight records a new
one, as `billing-ops check` does), every runbook box with who ticks it (machine: check, result,
time of the last run; person: who and when, and why no machine can), then the manual checklist as
editable items. Viewing the page writes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
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


STALE_AFTER = timedelta(hours=1)  # older results still show, with a nudge to run again before signing


@st.cache_data(ttl=15, show_spinner=False)
def _last_run() -> tuple[list[dict[str, Any]], str, str] | None:
    """The last recorded run (audit row `preflight.run`): viewing the page runs nothing."""
    last = preflight_record.last_run(runtime().uow())
    if last is None:
        return None
    ran_at, actor, results = last
    return [result.to_dict() for result in results], ran_at.isoformat(), actor


@st.cache_data(ttl=15, show_spinner=False)
def _items() -> list[dict[str, Any]]:
    return checklist.list_items(runtime().uow())  # seeded by `billing-ops db upgrade` / `run` / the demo


def _age(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h" if minutes < 48 * 60 else f"{minutes // (24 * 60)} days"


def _ran(outcome: tuple[list[preflight.CheckResult], datetime, bool]) -> str:
    results = outcome[0]
    blocking = [r.id for r in results if not r.passed and r.severity == "blocking"]
    return (f"Preflight recorded: not ready, {len(blocking)} blocking failure(s)." if blocking
            else "Preflight recorded: no blocking failures.")


def _not_recorded(outcome: tuple[list[preflight.CheckResult], datetime, bool]) -> str | None:
    return None if outcome[2] else ("The preflight ran but the billing database could not record it; "
                                    "`billing-ops check` reports why (db.migrated).")


st.header("Preflight")
show_flash("preflight", refused="Not recorded")
if st.button("Run preflight", type="primary"):
    run_action("preflight", lambda: preflight_record.run_and_record(rt, actor=identity.email), _ran,
               failure=_not_recorded, after=_last_run.clear)
last = _last_run()
results: list[dict[str, Any]] = []
ran_at: datetime | None = None
if last is None:
    st.info("No preflight has been recorded yet: press **Run preflight** (or run `billing-ops check`).")
else:
    results, ran_at_text, ran_by = last
    ran_at = datetime.fromisoformat(ran_at_text)
    age = rt.clock() - ran_at
    st.caption(f"Last run: {ran_at_text[:19].replace('T', ' ')} UTC by {ran_by}, {_age(age)} ago.")
    if age > STALE_AFTER:
        st.warning(f"These results are {_age(age)} old: run the preflight again before signing off.")
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
boxes = preflight_record.box_rows([preflight.CheckResult(**r) for r in results] or None, ran_at, items)
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
if not items:
    st.warning("The checklist is empty: run `billing-ops db upgrade` (it adds the runbooks' manual items, keeping "
               "edited ones), then reload this page.")
    st.stop()
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
