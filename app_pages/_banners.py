"""Banners shown above every admin page: a kill switch that is on."""

from __future__ import annotations

import streamlit as st

from app_pages._shared import plain, runtime
from services import switches


def render_switch_banners() -> None:
    states = [s for s in switches.all_states(runtime().uow()).values() if s.paused]
    if not states:
        return
    waiting = switches.backlog(runtime().uow())["events"]
    for state in states:
        held = f" {waiting} event(s) waiting." if state.name == "processing" else ""
        st.warning(f"{switches.TITLES[state.name]} is PAUSED by {plain(state.by)} since {state.since_text}: "
                   f"{plain(state.reason)}.{held} Resume it on Launch controls.", icon=":material/pause_circle:")
