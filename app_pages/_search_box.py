"""The search box in every admin page's sidebar; results open on the Search page."""

from __future__ import annotations

import streamlit as st

from app_pages.registry import page_file


def render_search_box() -> None:
    with st.sidebar.form("global_search", border=False):
        query = st.text_input("Search", placeholder="email, id, last4, amount, name", key="global_search_query")
        if st.form_submit_button("Search") and query.strip():
            st.switch_page(page_file("search"), query_params={"q": query.strip()})
