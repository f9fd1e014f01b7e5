"""Launch controls' manual subscription correction (widgets only; services/corrections.py works):
look the subscription up, pick the correction, read before/after, confirm, see the result."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages._shared import plain, run_action, runtime, show_error, show_flash
from services import corrections
from services.auth import AccessDenied, Identity
from services.corrections import CorrectionError, CorrectionPreview
from services.stripe_gateway import StripeGatewayError

ERRORS = (AccessDenied, CorrectionError, StripeGatewayError)


def _close() -> None:
    st.session_state.pop("correction_confirm", None)


def _close_preview() -> None:
    _close()
    st.session_state.pop("correction_preview", None)


def render(identity: Identity) -> None:
    rt = runtime()
    st.header("Manual correction")
    st.caption("The rollback plan's manual corrections (runbook §12: customer.subscription.update), from here: "
               "change the price, set or clear cancel at period end, or clear a pending plan. Each is previewed "
               "with before/after, confirmed, sent once with its own idempotency key and audited.")
    show_flash("correction", refused="Nothing was changed")
    done = st.session_state.pop("correction_done", None)
    if done is not None:
        rows = [{"field": f, "before": corrections.value_text(done.before.get(f)),
                 "after": corrections.value_text(done.after.get(f))} for f in corrections.STATE_FIELDS]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    with st.form("correction"):
        subscription_id = st.text_input("Subscription id (sub_…)", key="correction_sub")
        kind = st.selectbox("Correction", list(corrections.KINDS), format_func=corrections.KINDS.__getitem__,
                            key="correction_kind")
        choices = corrections.price_choices(rt.settings)
        price_id = st.selectbox("New price (only for a price change)", [""] + list(choices),
                                format_func=lambda p: f"{choices[p]} · {p}" if p else "-", key="correction_price")
        if st.form_submit_button("Preview correction"):
            try:
                st.session_state["correction_preview"] = corrections.describe_correction(
                    subscription_id, kind, price_id=price_id or None, settings=rt.settings, uow=rt.uow(),
                    gateway=rt.gateway)
            except ERRORS as error:
                st.session_state.pop("correction_preview", None)
                show_error(error)
    preview: CorrectionPreview | None = st.session_state.get("correction_preview")
    if preview is None:
        return
    st.subheader(f"{preview.title}: {plain(preview.subscription_id)} (Stripe {preview.mode} mode)")
    st.text(f"Customer: {preview.customer}")
    st.dataframe(pd.DataFrame(preview.rows()), hide_index=True)
    for note in preview.notes:
        st.warning(plain(note))
    if st.button("Apply correction…", type="primary", key="correction_apply"):
        st.session_state["correction_confirm"] = True
    if st.session_state.get("correction_confirm"):
        _confirm(preview, identity)


def _confirm(preview: CorrectionPreview, identity: Identity) -> None:
    @st.dialog("Confirm this correction?", on_dismiss=_close)
    def dialog() -> None:
        rt = runtime()
        st.markdown(f"**{preview.title}** on a subscription in Stripe **{preview.mode}** mode.")
        st.text(f"Subscription: {preview.subscription_id}\nCustomer: {preview.customer}\n"
                f"Idempotency key: {preview.idempotency_key}")
        st.text("\n".join(f"{r['field']}: {r['before']} → {r['after']}" for r in preview.rows() if r["changes"]))
        col1, col2 = st.columns(2)
        if col1.button("Apply now", type="primary", key="correction_confirm_apply"):
            def apply() -> corrections.CorrectionResult:
                done = corrections.apply_correction(preview, actor=identity.email, settings=rt.settings,
                                                    uow=rt.uow(), gateway=rt.gateway)
                st.session_state["correction_done"] = done  # its before/after table is shown after the rerun
                return done

            run_action("correction", apply,
                       lambda done: f"Corrected {plain(done.subscription_id)}: {corrections.KINDS[done.kind].lower()} "
                                    f"(key {plain(done.idempotency_key)}).",
                       before=_close_preview)
        if col2.button("Cancel", key="correction_confirm_cancel"):
            _close()
            st.rerun()

    dialog()
