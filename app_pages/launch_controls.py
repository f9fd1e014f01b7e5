"""Launch controls (admin): the kill switches every worker obeys within one poll, and the
event backlog they hold. Pausing needs a reason and a confirmation; all of it is audited."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages import _corrections
from app_pages._shared import plain, require_admin, run_action, runtime, show_flash
from services import switches

identity = require_admin()
rt = runtime()
st.title("Launch controls")
st.caption(f"Stripe {rt.settings.stripe_mode} mode · the same switches as `billing-ops pause|resume|status`. "
           "Every worker and receiver on every machine obeys within one poll, without a restart.")

states = switches.all_states(rt.uow())
backlog = switches.backlog(rt.uow())
age = backlog["oldest_age_seconds"]
st.metric("Events waiting (verified, not yet processed)", backlog["events"],
          help="Deliveries stored and acknowledged but not handled yet; drained in Stripe's order on resume.")
if age is not None:
    st.caption(f"Oldest waiting event: {age / 60:.0f} min.")
st.dataframe(pd.DataFrame([{"switch": switches.TITLES[name], "state": "PAUSED" if s.paused else "running",
                            "by": s.by or "", "since": s.since_text if s.paused else "", "reason": s.reason or ""}
                           for name, s in states.items()]), hide_index=True)

EFFECTS = {
    "processing": "The receiver keeps verifying, storing and acknowledging every delivery (Stripe never needs the "
                  "endpoint removed); no worker handles any event until you resume, then they are processed in "
                  "Stripe's order, exactly once.",
    "reconcile": "The reconcile cron records a skipped run instead of applying downgrades, and every apply run "
                 "(CLI or page) is refused; dry-runs stay allowed.",
}


def _close() -> None:
    st.session_state.pop("switch_target", None)


@st.dialog("Confirm kill switch", on_dismiss=_close)
def confirm(name: str, pause: bool, reason: str) -> None:
    verb = "Pause" if pause else "Resume"
    st.write(f"**{verb} {switches.TITLES[name].lower()}** in Stripe **{rt.settings.stripe_mode}** mode, on every "
             "worker within one poll.")
    st.write(EFFECTS[name] if pause else "Held work starts again at the next poll.")
    if pause:
        st.text("Reason: " + reason)
    if st.button(f"{verb} now", type="primary"):
        if pause:
            run_action("switch", lambda: switches.pause_switch(name, reason=reason, actor=identity.email,
                                                               settings=rt.settings, uow=rt.uow()),
                       f"{switches.TITLES[name]} paused.", before=_close)
        else:
            run_action("switch", lambda: switches.resume_switch(name, actor=identity.email, settings=rt.settings,
                                                                uow=rt.uow()),
                       f"{switches.TITLES[name]} resumed.", before=_close)


for name, state in states.items():
    st.subheader(switches.TITLES[name])
    if state.paused:
        st.warning(f"Paused by {plain(state.by)} since {state.since_text}.")
        st.text("Reason: " + (state.reason or ""))
        if st.button("Resume…", key=f"resume_{name}"):
            st.session_state["switch_target"] = (name, False, "")
    else:
        st.caption(EFFECTS[name])
        reason = st.text_input("Reason for pausing (required)", key=f"reason_{name}")
        if st.button("Pause…", key=f"pause_{name}"):
            if len(reason.strip()) < switches.MIN_REASON_CHARS:
                st.error(f"Give a reason of at least {switches.MIN_REASON_CHARS} characters; nothing was changed.")
            else:
                st.session_state["switch_target"] = (name, True, reason.strip())
target = st.session_state.get("switch_target")
if target:
    confirm(*target)
show_flash("switch", refused="Nothing was changed")

_corrections.render(identity)
