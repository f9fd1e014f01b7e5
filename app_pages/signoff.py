"""Sign-off page (admin only): readiness, the two signatures, and the frozen
record shown read-only with a printable summary; a later blocking failure is
shown beside the record, never written into it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app_pages._shared import plain, require_admin, run_action, runtime, show_flash
from services import preflight, qa_matrix, signoff
from services.auth import signoff_roles

identity = require_admin()
rt = runtime()
st.title("Launch sign-off")
version = qa_matrix.code_version()
st.caption(f"Code version {version}: an engineering lead and a product owner, two different people.")


@st.cache_data(ttl=60, show_spinner="Checking readiness ...")
def _blocking_now() -> list[dict[str, Any]]:
    return [r.to_dict() for r in preflight.blocking_failures(preflight.run_preflight(runtime()))]


@st.cache_data(ttl=15, show_spinner=False)
def _qa_problems(code: str) -> list[str]:
    return qa_matrix.matrix_problems(runtime().uow(), version=code)


@st.cache_data(ttl=15, show_spinner=False)
def _not_ready(code: str) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
    reasons = [(reason.key, reason.text) for reason in signoff.readiness_reasons(runtime())]
    return reasons, signoff.launch_override(runtime().uow(), version=code)


@st.cache_data(ttl=15, show_spinner=False)
def _record(code: str) -> signoff.LaunchRecord | None:
    return signoff.launch_record(runtime().uow(), version=code)


def _clear_record() -> None:
    _record.clear()
    _not_ready.clear()


show_flash("signoff", refused="Not signed")
blocking = _blocking_now()
qa_problems = _qa_problems(version)
record = _record(version)

if record is not None and record.complete:
    st.success(f"Signed off: {record.launch_key}. This record is frozen.")
    if blocking:
        st.error("Since sign-off, the preflight reports blocking failures (shown beside the record; the record is "
                 "unchanged): " + "; ".join(f"{b['id']}: {b['message']}" for b in blocking))
else:
    st.header("Readiness")
    if blocking:
        st.error("Preflight (run by this page, as a signature will run it) has blocking failures: "
                 + "; ".join(f"{b['id']}: {b['message']}" for b in blocking))
    else:
        # Not the recorded run on Preflight & checklist: this page runs the checks itself, as signing does.
        st.success("Preflight (run by this page within the last minute, as a signature will run it): "
                   "no blocking failures.")
    if qa_problems:
        st.error("QA matrix not green at this code version: " + "; ".join(qa_problems))
    else:
        st.success("QA matrix: all 8 cases passed at this code version.")
    reasons, override_on_record = _not_ready(version)
    covered = set((override_on_record or {}).get("covers", []))
    not_ready = [text for key, text in reasons if key not in covered]
    if reasons and not not_ready and override_on_record:
        st.warning(f"Not ready ({len(reasons)}), but every reason is covered by the override "
                   f"{plain(override_on_record['by'])} signed with; the second signature is accepted for them.")
        st.text("Override reason: " + override_on_record["reason"])
    elif not_ready:
        st.error(f"Not ready ({len(not_ready)}): sign-off is refused until these are fixed, or an engineering "
                 "lead overrides them with a written reason (audited, frozen into the record).")
        st.text("\n".join(f"- {reason}" for reason in not_ready))
    else:
        st.success("Checklist done, no alert firing, go-live time set.")
    roles = signoff_roles(identity.email, rt.settings)
    if not roles:
        st.info(f"{identity.email} is not named in SIGNOFF_ENG_LEADS or SIGNOFF_PRODUCT_OWNERS; you can read "
                "the record but not sign.")
    with st.form("sign"):
        role = st.selectbox("Sign as", list(signoff.ROLES), format_func=lambda r: signoff.ROLES[r])
        note = st.text_input("Note (optional)")
        override = st.text_area(
            "Override reason (engineering lead only, when not ready)", disabled=not not_ready,
            help=f"At least {signoff.MIN_OVERRIDE_REASON_CHARS} characters: why launching with the reasons "
                 "above is right. The product owner's signature is then accepted for those same reasons.")
        if st.form_submit_button("Sign off", type="primary"):
            run_action("signoff", lambda: signoff.sign(role, actor=identity.email, settings=rt.settings, uow=rt.uow(),
                                                       runtime=rt, note=note,
                                                       override_reason=override if not_ready else None),
                       f"Signed as {signoff.ROLES[role].lower()}.", after=_clear_record)

if record is not None:
    st.header("Record")
    for signature in record.signatures:
        metrics = signature["metrics"] or {}
        snapshot = f"snapshot {metrics['id']}" if metrics.get("id") else metrics.get("unavailable", "no snapshot")
        st.markdown(f"- **{signoff.ROLES.get(signature['role'], signature['role'])}**: {plain(signature['signer'])} "
                    f"at {signature['signed_at']:%Y-%m-%d %H:%M UTC} · code {plain(signature['code_version'])} · "
                    f"{plain(snapshot)}" + (f" · {plain(signature['note'])}" if signature["note"] else ""))
    for signature in record.signatures:
        readiness = (signature["preflight"] or {}).get("readiness") or {}
        frozen_override = readiness.get("override")
        if frozen_override:
            st.warning(f"Signed while not ready: overridden by {plain(frozen_override['by'])} "
                       f"at {frozen_override['at']}.")
            st.text("Reason: " + frozen_override["reason"] + "\nOverridden: " +
                    "; ".join(r["text"] for r in readiness.get("reasons", [])))
    first = record.signatures[0]
    st.subheader("Frozen QA results")
    st.dataframe(pd.DataFrame([{"case": case_id, "result": r["status"], "run": r.get("run_id"),
                                "by": r.get("actor")} for case_id, r in
                               (first["qa_results"].get("cases") or {}).items()]),
                 hide_index=True)
    st.subheader("Frozen preflight")
    st.dataframe(pd.DataFrame([{"check": c["id"], "severity": c["severity"], "passed": c["passed"],
                                "message": c["message"]} for c in first["preflight"].get("results", [])]),
                 hide_index=True)
    st.download_button("Download summary (markdown)", signoff.summary_markdown(record),
                       file_name=f"{record.launch_key.replace('@', '-')}.md", mime="text/markdown")
