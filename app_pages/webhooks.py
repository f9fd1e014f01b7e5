"""Webhooks page (admin only)."""

import streamlit as st

from app_pages._shared import require_admin

identity = require_admin()
st.title("Webhooks")
