"""Disputes (admin): the queue by deadline, one dispute's context, evidence, submit or accept."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages import _dispute_panels as panels
from app_pages import _queue_reads as reads
from app_pages._shared import (
    plain,
    require_admin,
    run_action,
    runtime,
    show_flash,
    stripe_dashboard_url,
    take_linked_query_param,
)
from app_pages.registry import page_file
from db.models.base import utcnow
from services import dispute_analytics, dispute_queue, dispute_views, disputes
from services import dispute_evidence as ev
from services.money import MoneyError, format_totals
from services.money import format_money as money

identity = require_admin()
rt = runtime()
mode = rt.settings.stripe_mode.upper()
PAGE_SIZE = 50


st.title("Disputes")
show_flash("dispute", refused="Nothing was changed")

# The filters live in the URL too (?status=&reason=&email=&currency=&min=&max=&page=), so a
# refresh or a shared link shows the same queue.
def _url_list(name: str, allowed: list[str]) -> list[str] | None:
    raw = st.query_params.get(name)
    return None if raw is None else [v for v in raw.split(",") if v in allowed]


def _url_number(name: str, minimum: float) -> float | None:
    try:
        value = float(st.query_params.get(name, ""))
    except ValueError:
        return None
    return value if value >= minimum and value < 1e12 else None


reason_options = reads.dispute_reasons()
if "dispute_filters_from_url" not in st.session_state:
    # Seeded once per session from the URL; stable widget keys keep later edits (a default that
    # changed with the URL would make Streamlit treat the widget as a new one and drop them).
    st.session_state["dispute_filters_from_url"] = True
    st.session_state["f_status"] = (_url_list("status", list(dispute_queue.ALL_STATUSES))
                                    if "status" in st.query_params else list(dispute_queue.OPEN_STATUSES))
    st.session_state["f_reason"] = _url_list("reason", reason_options) or []
    st.session_state["f_email"] = st.query_params.get("email", "")[:320]
    st.session_state["f_currency"] = st.query_params.get("currency", "")[:3]
    st.session_state["f_min"] = _url_number("min", 0.0) or 0.0
    st.session_state["f_max"] = _url_number("max", 0.0) or 0.0
    st.session_state["f_page"] = int(_url_number("page", 1.0) or 1)
with st.form("dispute_filters"):
    cols = st.columns(3)
    statuses = cols[0].multiselect("Status", list(dispute_queue.ALL_STATUSES), key="f_status")
    reason_choice = cols[1].multiselect("Reason", reason_options, key="f_reason")
    email = cols[2].text_input("Customer email contains", key="f_email")
    cols = st.columns(3)
    currency = cols[0].text_input("Currency", placeholder="usd", key="f_currency")
    min_amount = cols[1].number_input("Min amount", min_value=0.0, step=10.0, key="f_min")
    max_amount = cols[2].number_input("Max amount (0 = any)", min_value=0.0, step=10.0, key="f_max")
    page_number = st.number_input("Page", min_value=1, step=1, key="f_page")
    if st.form_submit_button("Apply filters"):
        # New filters choose from the new queue: a dispute linked earlier no longer sticks.
        st.query_params.pop("dispute", None)
        st.session_state.pop("dispute_choice", None)
        default_statuses = set(statuses) == set(dispute_queue.OPEN_STATUSES)
        wanted = {"status": "" if default_statuses else ",".join(statuses), "reason": ",".join(reason_choice),
                  "email": email.strip(),
                  "currency": currency.strip(), "min": f"{min_amount:g}" if min_amount else "",
                  "max": f"{max_amount:g}" if max_amount else "", "page": str(page_number) if page_number > 1 else ""}
        for name, value in wanted.items():
            if value or (name == "status" and not default_statuses):
                st.query_params[name] = value
            else:
                st.query_params.pop(name, None)

try:
    min_minor, max_minor = dispute_queue.amount_bounds(currency, min_amount, max_amount)
except MoneyError as error:
    st.warning(f"Amount filter not applied: {error.message}")
    min_minor = max_minor = None
queue = reads.dispute_queue_page(dispute_queue.DisputeFilter(
    statuses=tuple(statuses), reasons=tuple(reason_choice), currency=currency or None,
    min_amount=min_minor, max_amount=max_minor,
    customer_email=email or None, limit=PAGE_SIZE, offset=(int(page_number) - 1) * PAGE_SIZE,
))
top = st.columns(5)
top[0].metric("Open", queue.open_count)
top[1].metric("Overdue", queue.overdue)
top[2].metric("Due in 24 h", queue.due_24h)
top[3].metric("Due in 72 h", queue.due_72h)
top[4].metric("Amount at risk", format_totals(queue.at_risk, empty="nothing"))

now = utcnow()
if not queue.rows:
    st.info("No disputes match these filters.")
    st.stop()
table = pd.DataFrame([{
    "urgency": dispute_queue.urgency(d.due_by, d.status, now), "due by": d.due_by, "dispute": d.id,
    "status": d.status, "reason": d.reason, "network code": panels.network_code(d),
    "amount": money(d.amount, d.currency), "customer": d.customer_email,
} for d in queue.rows])
st.dataframe(table.style.apply(lambda row: ["background-color: #fde2e1" if row["urgency"] == "overdue" else
                                            "background-color: #fff4d6" if row["urgency"] else ""] * len(row),
                               axis=1), hide_index=True, width="stretch")
st.caption(f"{len(queue.rows)} of {queue.total} on this page; open disputes by deadline first.")

# The chosen dispute lives in the URL (?dispute=dp_...), so a refresh or a shared link opens it,
# even when it is outside the current filters or page.
shown = list(queue.rows)
linked = dispute_queue.find(rt.uow(), st.query_params.get("dispute") or take_linked_query_param("dispute"))
if linked is not None and all(d.id != linked.id for d in shown):
    shown.append(linked)
options = [d.id for d in shown]
chosen = st.selectbox("Dispute", options, index=options.index(linked.id) if linked is not None else 0,
                      key="dispute_choice",  # one widget whatever the index, so a pick is never reset
                      format_func=lambda i: next(f"{d.id} · {d.status} · {money(d.amount, d.currency)} · "
                                                 f"{d.customer_email or 'unknown'}" for d in shown if d.id == i))
if st.query_params.get("dispute") != chosen:
    st.query_params["dispute"] = chosen
# The charge as Stripe has it now is asked for first, then the reads shown at the foot of the page
# are started, so Stripe's round trip overlaps them and the context's (app_pages/_queue_reads.py).
chosen_charge = next((d.charge_id for d in shown if d.id == chosen), None)
live_charge_later = reads.from_stripe(reads.live_charge, chosen_charge) if chosen_charge else None
programme_warnings_later = reads.later(reads.programme_warnings)
dispute_rates_later = reads.later(reads.dispute_rates, 30)


def _live_charge(charge_id: str) -> dispute_queue.LiveCharge:
    if live_charge_later is not None and charge_id == chosen_charge:
        return live_charge_later.result()
    return reads.live_charge(charge_id)


context = dispute_queue.get_context(rt.uow(), chosen, rt.gateway, live_charge=_live_charge)
dispute = context.dispute
st.subheader(f"{money(dispute.amount, dispute.currency)} · {plain(dispute.reason or 'general')} · "
             f"{plain(dispute.status)}")
panels.network_line(dispute)
read_only_reason = disputes.read_only_reason(dispute, now)
if read_only_reason:
    st.warning(read_only_reason)
st.link_button("Open in Stripe", stripe_dashboard_url(f"disputes/{dispute.id}"))
info = st.columns(3)
charge = context.charge or {}
card = (charge.get("payment_method_details") or {}).get("card") or {}
outcome = charge.get("outcome") or {}
info[0].markdown(f"**Charge** {plain(dispute.charge_id)}  \nCard: {plain(card.get('brand', '?'))} "
                 f"···{plain(card.get('last4', '?'))} ({plain(card.get('country', '?'))})  \n"
                 f"3DS: {plain((card.get('three_d_secure') or {}).get('result', 'none'))}  \n"
                 f"Radar risk: {plain(outcome.get('risk_level', '?'))} ({plain(outcome.get('risk_score', '?'))})")
if context.charge_error:
    info[0].caption(f"Live charge unavailable: {plain(context.charge_error)}")
customer = context.customer
info[1].markdown("**Customer**")
# Name and email are customer-controlled: plain text, never markdown.
info[1].text(f"{customer.name if customer and customer.name else 'unknown'}\n"
             f"{customer.email if customer else dispute.customer_email or ''}\n"
             + ", ".join(f"{s.plan or '?'} ({s.status})" for s in context.subscriptions))
info[2].markdown(f"**Due by** {dispute.due_by:%Y-%m-%d %H:%M} UTC  \n"
                 f"{dispute_queue.urgency(dispute.due_by, dispute.status, now) or 'on time'}"
                 if dispute.due_by else "**Due by** n/a")
with st.expander(f"Billing history: {len(context.invoices)} invoices, {len(context.refunds)} refunds, "
                 f"{len(context.plan_history)} plan changes, "
                 f"{len(context.same_customer_disputes)} other disputes by this customer, "
                 f"{len(context.same_card_disputes)} by other customers on the same card, "
                 f"{len(context.fraud_warnings)} early fraud warnings"):
    if context.invoices:
        st.dataframe(pd.DataFrame([{"invoice": i.id, "created": i.created, "status": i.status,
                                    "amount": money(i.amount_due, i.currency), "plan": i.plan}
                                   for i in context.invoices]), hide_index=True)
    if context.same_customer_disputes:
        st.markdown("**Same customer**")
        for other in context.same_customer_disputes:
            st.text(f"Dispute {other.id}: {other.status}, {money(other.amount, other.currency)}")
    if context.same_card_disputes:
        st.markdown("**Same card, other customers**")
        for same in context.same_card_disputes:
            # The other customer's name and email are customer-controlled: plain text only.
            st.text(f"Dispute {same.dispute.id} by {same.customer_label}: {same.dispute.status}, "
                    f"{money(same.dispute.amount, same.dispute.currency)}")
    for warning in context.fraud_warnings:
        st.write(f"Early fraud warning {plain(warning.id)}: {plain(warning.fraud_type)}, {plain(warning.status)}")

panels.ce3_panel(rt, dispute)

read_only = read_only_reason is not None
advice, key_fields = ev.guidance_for(dispute.reason)
st.info(f"**{plain((dispute.reason or 'general').replace('_', ' '))}**: {advice} Most useful: "
        + ", ".join(ev.ALL_FIELDS[f].label for f in key_fields))
saved = dict(context.draft.fields) if context.draft else {}
files = dict(context.draft.files) if context.draft else {}
initial = saved or dispute_views.auto_draft(context, rt.settings)
if not saved and not read_only:
    st.caption("First draft filled in from the billing DB; review it before saving.")

def _evidence_input(evidence_field: ev.EvidenceField) -> None:
    if evidence_field.is_file:
        attached = files.get(evidence_field.name)
        st.caption(f"{evidence_field.label}: {plain(attached['filename'])}" if attached else
                   f"{evidence_field.label}: no file yet (attach below)")
        return
    widget = st.text_area if evidence_field.multiline else st.text_input
    values[evidence_field.name] = widget(evidence_field.label, value=initial.get(evidence_field.name, ""),
                                         key=f"{dispute.id}_{evidence_field.name}", disabled=read_only)


with st.form(f"evidence_{dispute.id}"):
    values: dict[str, str] = {}
    # Guided by the reason: the fields that matter for it first, the others folded away.
    st.markdown(f"**What matters for {plain((dispute.reason or 'general').replace('_', ' '))}**")
    for name in key_fields:
        _evidence_input(ev.ALL_FIELDS[name])
    with st.expander("Other evidence fields"):
        for group, fields in ev.GROUPS.items():
            others = [f for f in fields if f.name not in key_fields]
            if others:
                st.markdown(f"**{group}**")
            for evidence_field in others:
                _evidence_input(evidence_field)
    st.caption(f"{ev.text_length(values):,} of {ev.TEXT_LIMIT:,} characters")
    if st.form_submit_button("Save draft", disabled=read_only):
        run_action("dispute", lambda: disputes.save_draft(dispute.id, values, actor=identity.email,
                                                          settings=rt.settings, uow=rt.uow(), gateway=rt.gateway),
                   "Draft saved and staged at Stripe (not submitted).", after=reads.clear)

if not read_only:
    with st.form(f"evidence_file_{dispute.id}", clear_on_submit=True):
        # The reason's most useful file field first (a receipt for fraud, the policy for a cancellation).
        file_options = [f for f in key_fields if f in ev.FILE_FIELDS] + [f for f in ev.FILE_FIELDS
                                                                         if f not in key_fields]
        file_field = st.selectbox("Attach a file to", file_options, format_func=lambda f: ev.ALL_FIELDS[f].label)
        upload = st.file_uploader("PDF, JPEG or PNG, up to 5 MB", type=["pdf", "jpg", "jpeg", "png"])
        if st.form_submit_button("Upload file") and upload is not None:
            name, content = upload.name, upload.getvalue()
            run_action("dispute", lambda: disputes.upload_evidence_file(
                dispute.id, file_field, name, content, actor=identity.email, settings=rt.settings, uow=rt.uow(),
                gateway=rt.gateway), f"Attached {plain(name)}.", after=reads.clear)

    def _close() -> None:
        st.session_state.pop("dispute_confirm", None)

    @st.dialog("Submit this evidence?", on_dismiss=_close)
    def confirm_submit() -> None:
        lines = dispute_views.submission_summary(rt.uow(), dispute.id)
        st.write(f"This sends the saved evidence for the **{money(dispute.amount, dispute.currency)}** dispute "
                 f"{plain(dispute.id)} to the card network in Stripe **{mode}** mode. It can be submitted only once; "
                 "the form becomes read-only.")
        who = customer.name if customer and customer.name else None
        email_shown = customer.email if customer and customer.email else dispute.customer_email
        named = " ".join(p for p in (who, f"<{email_shown}>" if email_shown else None) if p)
        st.text(f"Customer: {named or 'unknown'}")
        st.text(f"Deadline: {dispute.due_by:%Y-%m-%d %H:%M} UTC" if dispute.due_by else "Deadline: none given")
        st.markdown("**What will be sent**")
        for line in lines:  # customer-controlled text: plain, never markdown
            st.text(f"{'File — ' if line.is_file else ''}{line.label}: {line.value}")
        if st.button("Submit evidence", type="primary"):
            run_action("dispute", lambda: disputes.submit_evidence(dispute.id, actor=identity.email,
                                                                   settings=rt.settings, uow=rt.uow(),
                                                                   gateway=rt.gateway),
                       "Evidence submitted; the dispute is under review.", before=_close, after=reads.clear)

    @st.dialog("Accept this dispute?", on_dismiss=_close)
    def confirm_accept() -> None:
        st.write(f"Accepting closes {plain(dispute.id)} in Stripe **{mode}** mode and gives up "
                 f"**{money(dispute.amount, dispute.currency)}** to the cardholder. This cannot be undone.")
        if st.button(f"Accept and lose {money(dispute.amount, dispute.currency)}", type="primary"):
            run_action("dispute", lambda: disputes.accept_dispute(dispute.id, actor=identity.email,
                                                                  settings=rt.settings, uow=rt.uow(),
                                                                  gateway=rt.gateway),
                       "Dispute accepted and closed.", before=_close, after=reads.clear)

    actions = st.columns(2)
    if actions[0].button("Submit evidence…", type="primary", disabled=not saved and not files):
        st.session_state["dispute_confirm"] = ("submit", dispute.id)
    if actions[1].button("Accept dispute…"):
        st.session_state["dispute_confirm"] = ("accept", dispute.id)
    pending = st.session_state.get("dispute_confirm")
    if pending and pending[1] == dispute.id:
        (confirm_submit if pending[0] == "submit" else confirm_accept)()

panels.submitted_panel(rt, dispute)
history = dispute_views.evidence_history(rt.uow(), dispute.id)
if history:
    st.markdown("**Evidence history**")
    st.dataframe(pd.DataFrame(history), hide_index=True, width="stretch")
panels.timeline_panel(rt, dispute.id)

st.subheader("Dispute rate")
for programme_warning in programme_warnings_later.result():
    st.warning(programme_warning)
panels.analytics_link(page_file("dispute-analytics"))
series = dispute_rates_later.result()
chart_days = [p["day"] for p in series]
# The thresholds are dotted traces across the chart: plotly's add_hline costs more than the rest of the
# page's rerun together (it re-lays out the axes per line).
figure = go.Figure(
    [go.Scatter(x=chart_days, y=[p["rate"] * 100 for p in series], mode="lines+markers",
                name="disputes / charges (30 days)")]
    + [go.Scatter(x=[chart_days[0], chart_days[-1]], y=[level * 100] * 2, mode="lines", name=label,
                  line={"dash": "dot"}, hoverinfo="name") for label, level in dispute_analytics.CHART_LINES.items()],
    layout=go.Layout(yaxis={"title": {"text": "%"}}, height=320))
st.plotly_chart(figure, width="stretch")
