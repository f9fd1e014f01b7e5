"""The Radar panel of one early fraud warning (part of the EFW page): the charge's Radar context,
related payments, refund and block, partial refund, blocks with Undo, and the refund history.
Widgets only; every action is one service call."""

from __future__ import annotations

from collections.abc import Callable, Sized
from functools import partial
from typing import TypeVar

import pandas as pd
import streamlit as st

from app_pages._shared import plain, run_action, show_error
from services import efw_radar
from services import fraud_warnings as efw
from services.money import MoneyError, parse_amount
from services.money import format_money as money
from services.runtime import Runtime

T = TypeVar("T")
REASON_LABELS = {"requested_by_customer": "requested by customer", "duplicate": "duplicate",
                 "fraudulent": "fraudulent"}


def _act(row: efw.EfwRow, action: Callable[[], T], success: Callable[[T], str], done: Callable[[], None], *,
         before: Callable[[], None] | None = None, partly: Callable[[T], bool] | None = None) -> None:
    """One panel action through the page's `run_action` (flashed under "efw"); the warning stays
    open (and shareable) afterwards."""
    def keep_open() -> None:
        st.query_params["warning"] = row.id
        if before is not None:
            before()

    run_action("efw", action, success, before=keep_open, after=done, partly=partly)


def _blocked(outcomes: list[efw_radar.BlockOutcome]) -> str:
    return " ".join(plain(o.message) for o in outcomes)


def _some_failed(outcomes: list[efw_radar.BlockOutcome]) -> bool:
    return not all(o.ok for o in outcomes)


def _context_section(context: efw_radar.RadarContext) -> None:
    st.markdown("**Radar**")
    tiles = st.columns(4)
    tiles[0].metric("Risk level", context.risk_level or "n/a")
    tiles[1].metric("Risk score", "n/a" if context.risk_score is None else str(context.risk_score),
                    help="Radar's score from 0 to 99; higher is riskier.")
    tiles[2].metric("Outcome", (context.outcome_type or "n/a").replace("_", " "))
    tiles[3].metric("3-D Secure", context.three_d_secure_result or "not used",
                    help=f"version {context.three_d_secure_version}" if context.three_d_secure_version else None)
    st.table(pd.DataFrame([
        {"check": "CVC", "result": context.check(context.cvc_check)},
        {"check": "Address line 1 (AVS)", "result": context.check(context.address_line1_check)},
        {"check": "Postal code (AVS)", "result": context.check(context.address_postal_code_check)},
    ]).set_index("check"))
    # st.text: Stripe- and customer-controlled values shown as plain text.
    st.text(f"Seller message: {context.seller_message or 'none'}"
            + (f" · network: {context.network_status}" if context.network_status else "")
            + (f" · reason: {context.outcome_reason}" if context.outcome_reason else ""))
    st.text(f"Card: {context.card_brand or '?'} •••• {context.card_last4 or '????'} ({context.card_country or '?'})"
            f" · fingerprint {context.fingerprint or 'unknown'} · email {context.email or 'unknown'}"
            f" · IP {context.ip or 'not recorded'}")


def _heading(title: str, rows: Sized, empty: str) -> bool:
    """The section's title; False (with `empty` said) when it has no rows."""
    st.markdown(title)
    if not rows:
        st.caption(empty)
    return bool(rows)


def _related_section(rt: Runtime, row: efw.EfwRow) -> None:
    related = efw_radar.related_payments(rt.uow(), row.id)
    if not _heading("**Related payments** (same card fingerprint, email or IP)", related,
                    "No other payment shares this card, email or IP in the billing DB."):
        return
    with_warning = sum(1 for r in related if r.early_fraud_warning)
    st.caption(f"{len(related)} payment(s): {with_warning} with an early fraud warning, "
               f"{sum(1 for r in related if r.disputed)} disputed, "
               f"{sum(1 for r in related if r.amount_refunded)} refunded, "
               f"{sum(1 for r in related if r.status == 'failed')} failed"
               + (f" (the newest {efw_radar.RELATED_LIMIT} shown)" if len(related) >= efw_radar.RELATED_LIMIT else ""))
    st.dataframe(pd.DataFrame([{
        "same": ", ".join(r.matched_on), "created": r.created, "charge": r.charge_id, "customer": r.customer_email,
        "amount": money(r.amount, r.currency), "refunded": money(r.amount_refunded, r.currency),
        "outcome": r.outcome_type, "risk": f"{r.risk_level or '?'} ({r.risk_score})"
        if r.risk_score is not None else (r.risk_level or ""), "early fraud warning": r.early_fraud_warning or "",
        "disputed": r.disputed, "status": r.status,
    } for r in related]), hide_index=True, width="stretch")


def _blocks_section(rt: Runtime, row: efw.EfwRow, actor: str, done: Callable[[], None]) -> None:
    blocks = efw_radar.blocks_for(rt.uow(), row.id)
    if not blocks:
        return
    st.markdown("**Blocked on Radar lists**")
    for block in blocks:
        cols = st.columns([4, 1])
        if block.status != "removed":
            when = f"by {block.actor}"
        else:  # removed by an Undo, or never added (Stripe refused; the audit log has why)
            when = f"removed by {block.removed_by}" if block.removed_by else f"not added, tried by {block.actor}"
        before = "" if block.created_item else " (already listed before)"
        cols[0].text(f"{block.label}: {block.value} on @{block.value_list_alias}{before} · {block.status} · {when}")
        if block.status == "active" and cols[1].button("Undo", key=f"efw_unblock_{block.id}"):
            _act(row, partial(efw_radar.unblock, block.id, actor=actor, settings=rt.settings, uow=rt.uow(),
                              gateway=rt.gateway), plain, done)


def _history_section(rt: Runtime, row: efw.EfwRow) -> None:
    history = efw.refund_history(rt.uow(), row.charge_id)
    if not _heading("**Refund history**", history, "No refunds on this charge."):
        return
    # A static table (a few rows): every cell readable as text, also by a screen reader.
    st.table(pd.DataFrame([{
        "created": h.created.strftime("%Y-%m-%d %H:%M UTC") if h.created else "", "refund": h.id,
        "amount": money(h.amount, h.currency),
        "reason": REASON_LABELS.get(h.reason or "", h.reason or ""), "status": h.shown_status,
        "failure": (h.failure_reason or "").replace("_", " "), "sent by": h.requested_by or "outside the console",
    } for h in history]).set_index("created"))


def render(row: efw.EfwRow, *, actor: str, rt: Runtime, mode: str, done: Callable[[], None]) -> None:
    context = efw_radar.radar_context(rt.uow(), row.id)
    if context is None:
        st.info("The charge is not in the billing DB yet, so there is no Radar context; it arrives with its "
                "charge.* webhook or the next backfill.")
    else:
        _context_section(context)
        _related_section(rt, row)
    values = efw_radar.block_values(context)
    can_refund = row.status == "open" and row.resolution is None

    def close_refund_and_block() -> None:
        st.session_state.pop("efw_refund_block_target", None)

    @st.dialog("Refund and block?", on_dismiss=close_refund_and_block)
    def confirm_refund_and_block(target: efw.EfwRow) -> None:
        st.write(f"Refund **{money(target.remaining, target.currency)}** on charge {plain(target.charge_id)} in "
                 f"Stripe **{mode}** mode, reason *fraudulent*, then add to the console's Radar block lists:")
        card = st.checkbox(f"the card (fingerprint {plain(values.get('card_fingerprint', 'unknown'))})",
                           value="card_fingerprint" in values, disabled="card_fingerprint" not in values)
        email = st.checkbox(f"the email {plain(values.get('email', 'unknown'))}", value="email" in values,
                            disabled="email" not in values)
        st.caption("The charge and warning are re-checked at Stripe first; each block can be undone here.")
        if st.button(f"Refund {money(target.remaining, target.currency)} and block", type="primary",
                     disabled=not (card or email)):
            _act(target, lambda: efw_radar.refund_and_block(
                target.id, confirmed_amount=target.remaining, card=card, email=email, actor=actor,
                settings=rt.settings, uow=rt.uow(), gateway=rt.gateway),
                lambda result: f"Refunded {money(result.amount, result.currency)} ({plain(result.refund_id)}, "
                               f"{plain(result.refund_status)}). {_blocked(result.blocks)}",
                done, before=close_refund_and_block, partly=lambda result: _some_failed(result.blocks))

    def close_partial() -> None:
        st.session_state.pop("efw_partial", None)

    @st.dialog("Partial refund?", on_dismiss=close_partial)
    def confirm_partial(target: efw.EfwRow, amount: int, reason: str) -> None:
        st.write(f"Refund **{money(amount, target.currency)}** of the {money(target.remaining, target.currency)} "
                 f"left on charge {plain(target.charge_id)} in Stripe **{mode}** mode, reason "
                 f"*{REASON_LABELS[reason]}*. The warning stays open unless nothing is left.")
        if st.button(f"Refund {money(amount, target.currency)}", type="primary"):
            _act(target, lambda: efw.partial_refund_fraud_warning(
                target.id, amount=amount, reason=reason, confirmed_remaining=target.remaining, actor=actor,
                settings=rt.settings, uow=rt.uow(), gateway=rt.gateway),
                lambda result: f"Refunded {money(result.amount, result.currency)} ({plain(result.refund_id)}, "
                               f"{plain(result.status)}).", done, before=close_partial)

    actions = st.columns(3)
    if can_refund and values and actions[0].button("Refund and block…", type="primary"):
        st.session_state["efw_refund_block_target"] = row.id
    if can_refund:
        with actions[1].form("efw_partial_form"):
            typed = st.text_input(f"Partial refund ({row.currency.upper()})",
                                  placeholder=f"at most {money(row.remaining, row.currency)}")
            reason = st.selectbox("Refund reason", list(REASON_LABELS), format_func=REASON_LABELS.__getitem__)
            if st.form_submit_button("Review partial refund"):
                try:
                    amount = parse_amount(typed, row.currency)
                except MoneyError as error:
                    show_error(error)
                else:
                    st.session_state["efw_partial"] = {"id": row.id, "amount": amount, "reason": reason}
    if values and row.status in ("open", "refunded"):
        with actions[2].form("efw_block_form"):
            block_card = st.checkbox("Block the card", value=False, disabled="card_fingerprint" not in values)
            block_email = st.checkbox("Block the email", value=False, disabled="email" not in values)
            if st.form_submit_button("Block"):
                _act(row, lambda: efw_radar.block_fraud_warning(
                    row.id, card=block_card, email=block_email, actor=actor, settings=rt.settings, uow=rt.uow(),
                    gateway=rt.gateway), _blocked, done, partly=_some_failed)
    if st.session_state.get("efw_refund_block_target") == row.id:
        confirm_refund_and_block(row)
    partial = st.session_state.get("efw_partial")
    if partial and partial["id"] == row.id:
        confirm_partial(row, int(partial["amount"]), str(partial["reason"]))
    _blocks_section(rt, row, actor, done)
    _history_section(rt, row)
