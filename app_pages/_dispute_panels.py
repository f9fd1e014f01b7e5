"""Parts of the disputes page: network line, Visa CE 3.0 panel, timeline, submitted evidence.
Widgets only; every figure comes from services/. Customer-controlled text is plain text."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from app_pages._shared import plain
from db.models import Dispute
from services import compelling_evidence as ce
from services import dispute_timeline, evidence_files
from services.money import format_money as money
from services.runtime import Runtime


def analytics_link(page: str) -> None:
    label = "Dispute analytics: win rates, losses, monitoring programmes"
    try:
        st.page_link(page, label=label)
    except StreamlitAPIException:  # the page run on its own (a deep link before navigation exists)
        st.markdown(f"[{label}](/dispute-analytics)")


def network_code(dispute: Dispute) -> str:
    """For the queue: "Visa 10.4", "Visa", or "" when Stripe gave neither."""
    network, code = ce.network_of(dispute)
    return " ".join(p for p in ((network or "").title(), code or "") if p)


def network_line(dispute: Dispute) -> None:
    network, code = ce.network_of(dispute)
    case_type = (((dispute.raw or {}).get("payment_method_details") or {}).get("card") or {}).get("case_type")
    st.markdown(f"**Network** {plain((network or 'unknown').title())} · **reason code** "
                f"{plain(code or 'not given by the network')} · **Stripe reason** "
                f"{plain((dispute.reason or 'general').replace('_', ' '))}"
                + (f" · **case** {plain(case_type)}" if case_type else ""))


def ce3_panel(rt: Runtime, dispute: Dispute) -> None:
    assessment = ce.assess(rt.uow(), dispute.id, test_mode=rt.settings.stripe_mode == "test")
    if not assessment.applies:
        return
    with st.container(border=True):
        st.markdown("**Visa Compelling Evidence 3.0**")
        if assessment.qualifies and assessment.pair:
            labels = ", ".join(ce.ELEMENT_LABELS[e] for e in assessment.elements)
            st.success(f"Eligible: two prior undisputed payments share {labels} with the disputed one. They are "
                       "sent as Stripe's enhanced evidence with the next save and with the submission.")
            st.dataframe(pd.DataFrame([{
                "charge": p.charge_id, "paid": f"{p.created:%Y-%m-%d}" if p.created else "",
                "days before": (assessment.disputed.created - p.created).days
                if assessment.disputed and assessment.disputed.created and p.created else None,
                "amount": money(p.amount, p.currency), "product": p.product_description,
            } for p in assessment.pair]), hide_index=True, width="stretch")
        else:
            st.warning("Not eligible from the billing DB: " + " ".join(assessment.reasons))
        if assessment.other_card_allowed:
            st.caption("Test mode: like Stripe's test environment, prior payments on another card are accepted; "
                       "live mode needs the same card.")
        status = ce.stripe_status_words(assessment)
        if status:
            st.caption(status)
        if len(assessment.candidates) > 2:
            st.caption(f"{len(assessment.candidates)} prior undisputed payments in the 120–365 day window.")


def timeline_panel(rt: Runtime, dispute_id: str) -> None:
    steps = dispute_timeline.timeline(rt.uow(), dispute_id)
    st.markdown("**Timeline**")
    if not steps:
        st.caption("No events for this dispute yet.")
        return
    # A dataframe shows every cell as plain text (file names are operator/customer text).
    st.dataframe(pd.DataFrame([{"when": f"{s.at:%Y-%m-%d %H:%M:%S} UTC", "who": s.who, "what": s.what,
                                "result": s.result} for s in steps]), hide_index=True, width="stretch",
                 key=f"timeline_{dispute_id}",
                 column_config={"what": st.column_config.TextColumn("what", width="large")})


def _size(size: int) -> str:
    if size < 1024:
        return f"{size:,} bytes"
    return f"{size / 1024:,.0f} KB" if size < 1024 * 1024 else f"{size / 1024 / 1024:,.1f} MB"


def submitted_panel(rt: Runtime, dispute: Dispute) -> None:
    view = evidence_files.submitted_evidence(rt.uow(), dispute.id)
    if not view.submitted:
        return
    with st.expander("Submitted evidence", expanded=True):
        if view.ce3_status:
            st.caption(f"Visa CE 3.0: {view.ce3_status.replace('_', ' ')}")
        for label, text in view.texts:
            st.markdown(f"**{plain(label)}**")
            st.text(text)
        if view.ce3_prior:
            st.markdown("**Visa CE 3.0 prior undisputed payments**")
            st.dataframe(pd.DataFrame([{"charge": p.get("charge"), "product": p.get("product_description"),
                                        "purchase IP": p.get("customer_purchase_ip"),
                                        "device": p.get("customer_device_id") or p.get("customer_device_fingerprint"),
                                        "account": p.get("customer_account_id")} for p in view.ce3_prior]),
                         hide_index=True, width="stretch")
        for preview in view.files:
            st.markdown(f"**{plain(preview.label)}**")
            st.text(f"{preview.filename} · {preview.file_type.upper()} · {_size(preview.size)}")
            if preview.content is None:
                st.caption("Uploaded outside the console; open it in Stripe.")
            elif preview.preview_png is None:
                st.caption("No preview: the file's contents cannot be read (Stripe checks only its type and size).")
            else:
                try:
                    st.image(preview.preview_png, width=360)
                except Exception:  # magic bytes right, image broken: Stripe took it, we cannot draw it
                    st.caption("No preview: the image data cannot be read.")
            if preview.pages:
                st.caption(f"PDF, {preview.pages} page{'s' if preview.pages != 1 else ''}; the first is shown.")
            if preview.content is not None:
                st.download_button(f"Download {preview.label.lower()}", preview.content, file_name=preview.filename,
                                   mime=preview.mime, key=f"dl_{dispute.id}_{preview.file_id}")
