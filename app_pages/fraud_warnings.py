"""Early fraud warnings (admin): the queue, refund or ignore one or many, Radar context, refund and block,
partial refunds and refund history (app_pages/_efw_radar.py), and the funnel."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages import _efw_radar as efw_radar_panel
from app_pages import _queue_reads as reads
from app_pages import _shared as ui
from app_pages._shared import plain, run_action
from services import efw_funnel
from services import fraud_warnings as efw
from services.money import format_money as money
from services.money import format_totals

identity = ui.require_admin()
rt = ui.runtime()
mode = rt.settings.stripe_mode.upper()
PAGE_SIZE = 50
# Reads are cached briefly (app_pages/_queue_reads.py) and cleared after every decision.
clear_reads = reads.clear

st.title("Early fraud warnings")
st.caption("Issuers warn before most fraud disputes. Refunding an actionable warning in time avoids the dispute "
           "and its fee; each refund is re-checked live at Stripe first and sent exactly once.")

ui.show_flash("efw", refused="Nothing was changed")
# The funnel at the foot of the page is read beside the queue (app_pages/_queue_reads.py); its period
# widget keeps its value in the session.
FUNNEL_PERIODS = [7, 30, 90]
funnel_days = st.session_state.get("efw_funnel_days", 30)
funnel_later = reads.later(reads.funnel, funnel_days)

with st.form("efw_filters"):
    cols = st.columns(5)
    statuses = cols[0].multiselect("Status", list(efw.STATUSES), default=["open", "refunding"])
    types = cols[1].multiselect("Fraud type", reads.fraud_types())
    actionable_choice = cols[2].selectbox("Actionable", ["any", "actionable only", "not actionable"])
    max_age = cols[3].selectbox("Age", ["any", "last 7 days", "last 30 days"])
    page_number = cols[4].number_input("Page", min_value=1, step=1)
    st.form_submit_button("Apply filters")

queue = reads.efw_queue_page(efw.EfwFilter(
    statuses=tuple(statuses), fraud_types=tuple(types),
    actionable={"any": None, "actionable only": True, "not actionable": False}[actionable_choice],
    max_age_days={"any": None, "last 7 days": 7, "last 30 days": 30}[max_age],
    limit=PAGE_SIZE, offset=(int(page_number) - 1) * PAGE_SIZE,
))
top = st.columns(5)
top[0].metric("Open", queue.open_count, help="Open warnings whose charge is neither disputed nor fully refunded.")
top[1].metric("Open and actionable", queue.actionable_open_count)
top[2].metric("Amount at risk", format_totals(queue.at_risk, empty="nothing"))
top[3].metric("Resolved by refund", queue.resolved_by_refund, help="The charge is already fully refunded.")
top[4].metric("Disputed", queue.disputed, help="The charge is disputed: answer the dispute instead.")

# A search hit or shared link (?warning=issfr_… or ?charge=ch_…) opens with that warning chosen, even
# when the filters hide it (e.g. a refunded one, whose blocks and refund history are still worked).
linked = st.query_params.get("warning") or next(
    (r.id for r in queue.rows if r.charge_id and r.charge_id == st.query_params.get("charge")), None)
rows_by_id = {r.id: r for r in queue.rows}
if linked and linked not in rows_by_id:
    outside = efw.get_fraud_warning(rt.uow(), linked)
    if outside is not None:
        rows_by_id = {outside.id: outside, **rows_by_id}

if not rows_by_id:
    st.info("No early fraud warnings match these filters.")
else:
    if not queue.rows:
        st.info("No early fraud warnings match these filters; showing the linked one.")
    st.dataframe(pd.DataFrame([{
        "created": r.created, "warning": r.id, "charge": r.charge_id, "customer": r.customer_email,
        "amount": money(r.amount, r.currency), "refundable": money(r.remaining, r.currency),
        "fraud type": r.fraud_type, "actionable": r.actionable, "status": r.shown_status, "decided by": r.actor,
        "decided at": r.decided_at, "dispute": f"{r.dispute_id} ({r.dispute_status})" if r.dispute_id else "",
    } for r in queue.rows]), hide_index=True, width="stretch")
    st.caption(f"Showing {len(queue.rows)} of {queue.total} (page {int(page_number)}, {PAGE_SIZE} a page); "
               "open and actionable first, oldest first.")

    # --- one warning ------------------------------------------------------------------------
    st.subheader("Decide one warning")
    ids = list(rows_by_id)
    chosen = st.selectbox("Warning", ids, index=ids.index(linked) if linked in ids else 0,
                          format_func=lambda i: f"{i} · {rows_by_id[i].customer_email or 'unknown'} · "
                                                f"{money(rows_by_id[i].amount, rows_by_id[i].currency)} · "
                                                f"{rows_by_id[i].shown_status}")
    row = rows_by_id[chosen]
    detail = st.columns(4)
    detail[0].write(f"**Issuer fraud type:** {plain(row.fraud_type or 'n/a')}")
    detail[1].write(f"**Actionable (Stripe):** {'yes' if row.actionable else 'no'}")
    detail[2].write(f"**Internal status:** {plain(row.status)}" + (f" by {plain(row.actor)}" if row.actor else ""))
    detail[3].link_button("Open charge in Stripe", ui.stripe_dashboard_url(f"payments/{row.charge_id}"))
    if row.reason:
        st.caption(f"Reason: {plain(row.reason)}")

    def _close_refund() -> None:
        st.session_state.pop("efw_refund_target", None)

    @st.dialog("Refund the full amount?", on_dismiss=_close_refund)
    def confirm_refund(target: efw.EfwRow) -> None:
        st.write(f"Refund **{money(target.remaining, target.currency)}** on charge {plain(target.charge_id)} "
                 f"({plain(target.customer_email or 'unknown customer')}) in Stripe **{mode}** mode, reason "
                 f"*fraudulent*. The charge and warning are re-checked at Stripe first.")
        if st.button(f"Refund {money(target.remaining, target.currency)}", type="primary"):
            run_action("efw", lambda: efw.refund_fraud_warning(
                target.id, confirmed_amount=target.remaining, actor=identity.email, settings=rt.settings,
                uow=rt.uow(), gateway=rt.gateway),
                lambda result: f"Refunded {money(result.amount, result.currency)} ({plain(result.refund_id)}).",
                before=_close_refund, after=clear_reads)

    actions = st.columns(3)
    if row.status == "open":
        if row.resolution == "disputed":
            actions[0].info(f"Disputed ({row.dispute_id}, {row.dispute_status}): nothing to refund here; answer "
                            "the dispute on the Disputes page.")
        elif row.resolution:
            actions[0].info("Resolved by refund: the charge is already fully refunded; nothing is at risk.")
        elif actions[0].button("Refund full amount…", type="primary"):
            st.session_state["efw_refund_target"] = row.id
        with actions[1].form("efw_ignore"):
            reason = st.text_area("Reason for ignoring", placeholder="e.g. long-standing customer, verified by phone")
            if st.form_submit_button("Mark as ignored"):
                run_action("efw", lambda: efw.ignore_fraud_warning(row.id, reason=reason, actor=identity.email,
                                                                   settings=rt.settings, uow=rt.uow()),
                           f"Marked {plain(row.id)} as ignored.", after=clear_reads)
    elif row.status == "ignored" and actions[0].button("Reopen"):
        run_action("efw", lambda: efw.reopen_fraud_warning(row.id, actor=identity.email, settings=rt.settings,
                                                           uow=rt.uow()),
                   f"Reopened {plain(row.id)}.", after=clear_reads)
    if st.session_state.get("efw_refund_target") == row.id:
        confirm_refund(row)
    efw_radar_panel.render(row, actor=identity.email, rt=rt, mode=mode, done=clear_reads)

    # --- many warnings ----------------------------------------------------------------------
    st.subheader("Bulk")
    open_rows = {r.id: r for r in queue.rows if r.status == "open"}
    picked = st.multiselect("Open warnings", list(open_rows))
    bulk_action = st.radio("Action", ["Refund full amounts", "Mark as ignored"], horizontal=True)
    bulk_reason = st.text_input("Reason (for ignoring)")

    def _close_bulk() -> None:
        st.session_state.pop("efw_bulk", None)

    @st.dialog("Confirm bulk action", on_dismiss=_close_bulk)
    def confirm_bulk(ids: list[str], action: str, reason: str) -> None:
        chosen_rows = [open_rows[i] for i in ids if i in open_rows]
        verb = "Refund" if action.startswith("Refund") else "Ignore"
        # A refund sends each row's refundable remainder (amount - amount_refunded); rows that would be
        # refused are shown as skipped, so the total is what is actually refunded.
        planned = efw.plan_bulk_refund(chosen_rows) if verb == "Refund" else []
        if verb == "Refund":
            chosen_rows = [p.row for p in planned if p.skip_reason is None]
            skipped = len(planned) - len(chosen_rows)
            st.write(f"Refund **{len(chosen_rows)}** warning(s) in Stripe **{mode}** mode, refunding "
                     f"**{format_totals(efw.planned_totals(planned), empty='nothing')}** in total"
                     + (f"; {skipped} chosen warning(s) skipped (see the note)." if skipped else "."))
            table = [{"warning": p.row.id, "customer": p.row.customer_email,
                      "charged": money(p.row.amount, p.row.currency),
                      "already refunded": money(p.row.amount_refunded, p.row.currency),
                      "will refund": p.shown, "note": p.skip_reason or ""} for p in planned]
        else:
            st.write(f"Ignore **{len(chosen_rows)}** warning(s) in Stripe **{mode}** mode with the reason: "
                     f"*{plain(reason)}*.")
            table = [{"warning": r.id, "customer": r.customer_email,
                      "refundable": money(r.remaining, r.currency)} for r in chosen_rows]
        st.dataframe(pd.DataFrame(table), hide_index=True)
        if st.button(f"{verb} {len(chosen_rows)} warning(s)", type="primary", disabled=not chosen_rows):
            bar = st.progress(0.0, text="Working…")

            def progress(done: int, total: int) -> None:
                bar.progress(done / total, text=f"{done} of {total}")

            def run_bulk() -> list[efw.BulkOutcome]:
                if verb == "Refund":
                    outcomes = efw.bulk_refund({r.id: r.remaining for r in chosen_rows}, actor=identity.email,
                                               settings=rt.settings, uow=rt.uow(), gateway=rt.gateway,
                                               progress=progress)
                else:
                    outcomes = efw.bulk_ignore([r.id for r in chosen_rows], reason=reason, actor=identity.email,
                                               settings=rt.settings, uow=rt.uow(), progress=progress)
                st.session_state["efw_bulk_results"] = [
                    {"warning": o.efw_id, "result": "done" if o.ok else "refused", "detail": o.message}
                    for o in outcomes
                ] + [{"warning": p.row.id, "result": "skipped", "detail": f"nothing sent: {p.skip_reason}"}
                     for p in planned if p.skip_reason]
                return list(outcomes)

            # The per-warning table below says which ones were refused; the flash gives the count.
            ui.run_action("efw", run_bulk,
                          lambda outcomes: f"{verb}: {sum(1 for o in outcomes if o.ok)} of {len(outcomes)} done.",
                          before=_close_bulk, after=clear_reads,
                          partly=lambda outcomes: not all(o.ok for o in outcomes))

    if st.button("Review bulk action…", disabled=not picked):
        st.session_state["efw_bulk"] = {"ids": picked, "action": bulk_action, "reason": bulk_reason}
    pending_bulk = st.session_state.get("efw_bulk")
    if pending_bulk:
        confirm_bulk(pending_bulk["ids"], pending_bulk["action"], pending_bulk["reason"])

bulk_results = st.session_state.pop("efw_bulk_results", None)
if bulk_results:
    st.write("**Bulk results**")
    st.dataframe(pd.DataFrame(bulk_results), hide_index=True, width="stretch")

# --- the funnel ---------------------------------------------------------------------------------
st.subheader("Funnel")
days = st.selectbox("Period", FUNNEL_PERIODS, index=1, format_func=lambda d: f"last {d} days", key="efw_funnel_days")
result = funnel_later.result() if days == funnel_days else reads.funnel(days)
if result.total == 0:
    st.info("No early fraud warnings in this period.")
else:
    figure = go.Figure(go.Bar(
        x=["warnings", "refunded", "ignored", "still open", "became disputes", "disputes lost"],
        y=[result.total, result.refunded, result.ignored, result.open, result.became_disputes, result.disputes_lost],
    ))
    figure.update_layout(title=f"Early fraud warnings, last {days} days", height=320)
    st.plotly_chart(figure, width="stretch")
    decided = st.columns(3)
    decided[0].metric("Refunded", result.refunded,
                      help=f"From this console, or the charge fully refunded elsewhere ({result.refunded_elsewhere})")
    decided[1].metric("Ignored", result.ignored)
    decided[2].metric("Still open", result.open,
                      help="Undecided, and the charge neither disputed nor fully refunded (the Open tile above, "
                           f"for this period); {result.open_disputed} undecided became disputes")
    stats = st.columns(4)
    stats[0].metric("Became disputes", result.became_disputes,
                    help=f"won {result.disputes_won}, lost {result.disputes_lost}, pending {result.disputes_pending}")
    dispute_fee = money(efw_funnel.DISPUTE_FEE_MINOR_UNITS, efw_funnel.DISPUTE_FEE_CURRENCY)
    stats[1].metric("Cost of lost disputes",
                    format_totals(result.dispute_cost, empty="nothing"),
                    help=f"Disputed amount plus a {dispute_fee} network fee per lost dispute.")
    stats[2].metric("Median time to decision", "n/a" if result.hours_to_decision_median is None
                    else f"{result.hours_to_decision_median} h")
    stats[3].metric("90th percentile", "n/a" if result.hours_to_decision_p90 is None
                    else f"{result.hours_to_decision_p90} h")
