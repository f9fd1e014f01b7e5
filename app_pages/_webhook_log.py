"""The Webhooks page's delivery log: filters in the URL, one event's redacted payload, Replay and
Mark resolved. Widgets only; services/webhook_log.py holds the logic."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from app_pages._shared import plain, run_action, show_flash, take_linked_query_param
from services import webhook_log
from services.auth import Identity
from services.runtime import Runtime

# The log's filters live in the URL (?log_type=a,b&log_object=&log_status=&log_source=&log_page=)
# and the open event in ?event=, so a refresh or a shared link shows the same rows and payload.
URL_PARAMS = ("log_type", "log_object", "log_status", "log_source", "log_page")
SOURCE_CHOICES = {"both": None, "webhook deliveries": "webhook", "backfill (Events API)": "backfill"}


def _url_list(name: str, allowed: list[str]) -> list[str]:
    raw = st.query_params.get(name) or ""
    return [v for v in raw.split(",") if v in allowed]


def _url_page() -> int:
    raw = st.query_params.get("log_page") or "1"
    return int(raw) if raw.isdigit() and 0 < len(raw) <= 6 else 1


def _seed_filters(types: list[str]) -> None:
    """Once per session from the URL; the widgets keep stable keys so later edits stick."""
    if "log_filters_from_url" in st.session_state:
        return
    st.session_state["log_filters_from_url"] = True
    st.session_state["log_f_types"] = _url_list("log_type", types)
    st.session_state["log_f_object"] = (st.query_params.get("log_object") or "")[:255]
    st.session_state["log_f_status"] = _url_list("log_status", list(webhook_log.STATUSES))
    source = st.query_params.get("log_source")
    st.session_state["log_f_source"] = next((label for label, value in SOURCE_CHOICES.items() if value == source),
                                            "both")
    st.session_state["log_f_page"] = _url_page()


def render_log(identity: Identity, rt: Runtime) -> None:
    st.subheader("Delivery log")
    st.caption("Every stored event, newest delivery first: how it arrived, what the signature check said, "
               "what processing made of it. Latency is from the event's creation at Stripe to its arrival here. "
               "Requests refused before storing (bad signature, other mode) are not events: the tiles and the "
               "per-endpoint chart above count them.")
    show_flash("log_replay", refused="Replay did not process it")
    show_flash("log_resolve", refused="Nothing was changed")
    types = webhook_log.event_types(rt.uow())
    _seed_filters(types)
    with st.form("log_filters"):
        cols = st.columns([3, 2, 2, 2, 1])
        chosen_types = cols[0].multiselect("Event type", types, key="log_f_types")
        object_id = cols[1].text_input("Object or event id", key="log_f_object", placeholder="ch_… or evt_…")
        statuses = cols[2].multiselect("Processing result", list(webhook_log.STATUSES), key="log_f_status")
        source_label = cols[3].selectbox("Source", list(SOURCE_CHOICES), key="log_f_source")
        page_number = cols[4].number_input("Page", min_value=1, step=1, key="log_f_page")
        if st.form_submit_button("Apply log filters"):
            st.query_params.pop("event", None)
            st.session_state.pop("log_event", None)
            wanted = {"log_type": ",".join(chosen_types), "log_object": object_id.strip(),
                      "log_status": ",".join(statuses), "log_source": SOURCE_CHOICES[source_label] or "",
                      "log_page": str(page_number) if page_number > 1 else ""}
            for name, value in wanted.items():
                if value:
                    st.query_params[name] = value
                else:
                    st.query_params.pop(name, None)
    flt = webhook_log.LogFilter(types=tuple(chosen_types), object_id=object_id or None, statuses=tuple(statuses),
                                source=SOURCE_CHOICES[source_label], limit=webhook_log.PAGE_SIZE,
                                offset=(int(page_number) - 1) * webhook_log.PAGE_SIZE)
    page = webhook_log.list_deliveries(rt.uow(), flt, settings=rt.settings)
    if not page.rows:
        st.info("No stored events match these filters." if page.total == 0 or page.offset == 0 else
                f"Page {int(page_number)} is past the last page ({page.pages}).")
    else:
        st.dataframe(pd.DataFrame([_table_row(r) for r in page.rows]), hide_index=True, width="stretch")
        st.caption(f"Rows {page.offset + 1}–{page.offset + len(page.rows)} of {page.total_text} · page "
                   f"{int(page_number)} of {page.pages}{'+' if page.capped else ''}"
                   + (" (narrow the filters to count them all)" if page.capped else ""))
    _render_event(identity, rt, page.rows)


def _table_row(r: webhook_log.DeliveryRow) -> dict[str, Any]:
    return {"received at (UTC)": r.received_at.strftime("%Y-%m-%d %H:%M:%S"), "type": r.type,
            "object": r.object_id or "", "event": r.id, "source": r.source, "signature": r.signature,
            "processing result": r.result, "attempts": r.attempts, "deliveries": r.deliveries,
            "latency (s)": None if r.latency_seconds is None else round(r.latency_seconds, 1),
            "processing (s)": None if r.processing_seconds is None else round(r.processing_seconds, 2)}


def _render_event(identity: Identity, rt: Runtime, rows: list[webhook_log.DeliveryRow]) -> None:
    linked_id = st.query_params.get("event") or take_linked_query_param("event")
    linked = webhook_log.event_detail(rt.uow(), linked_id, settings=rt.settings) if linked_id else None
    options = [r.id for r in rows]
    if linked is not None and linked.row.id not in options:
        options.append(linked.row.id)
    if not options:
        return
    labels = {r.id: f"{r.id} · {r.type} · {r.status}" for r in rows}
    if linked is not None:
        labels[linked.row.id] = f"{linked.row.id} · {linked.row.type} · {linked.row.status}"
    chosen = st.selectbox("Event", options, key="log_event",
                          index=options.index(linked.row.id) if linked is not None else 0,
                          format_func=lambda i: labels.get(i, i))
    if st.query_params.get("event") != chosen:
        st.query_params["event"] = chosen
    detail = linked if linked is not None and linked.row.id == chosen else \
        webhook_log.event_detail(rt.uow(), chosen, settings=rt.settings)
    if detail is None:
        return
    row = detail.row
    cols = st.columns(4)
    cols[0].metric("Processing result", row.status)
    cols[1].metric("Attempts", row.attempts)
    cols[2].metric("Deliveries", row.deliveries)
    cols[3].metric("Latency", "n/a" if row.latency_seconds is None else f"{row.latency_seconds:.1f} s")
    st.text(f"{row.type} about {row.object_id or 'no object'}\nSource: {row.source}\nSignature: {row.signature}\n"
            f"Result: {row.result}")
    with st.expander("Payload (secrets redacted)", expanded=True):
        st.code(json.dumps(detail.payload, indent=2, sort_keys=True, default=str), language="json")
    actions = st.columns(2)
    if row.status != "ignored" and actions[0].button("Replay this event", key=f"log_replay_{row.id}"):
        run_action("log_replay", lambda: webhook_log.replay(row.id, actor=identity.email, settings=rt.settings,
                                                            uow=rt.uow(), runtime=rt),
                   f"Replayed {plain(row.id)}: processed.")
    if row.status in webhook_log.RESOLVABLE:
        with actions[1].form(f"resolve_{row.id}"):
            st.markdown("**Mark resolved** (a poison event: it is never retried again)")
            reason = st.text_area("Reason (kept in the audit log)", key=f"resolve_reason_{row.id}",
                                  max_chars=webhook_log.REASON_MAX_CHARS)
            if st.form_submit_button("Mark resolved"):
                run_action("log_resolve", lambda: webhook_log.resolve_event(
                    row.id, reason, actor=identity.email, settings=rt.settings, uow=rt.uow()),
                    f"Marked {plain(row.id)} resolved; the worker will not retry it.")
    elif row.status == "resolved":
        actions[1].caption(f"Resolved {detail.resolved_at:%Y-%m-%d %H:%M} UTC" if detail.resolved_at else "Resolved")
