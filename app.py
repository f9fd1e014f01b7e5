"""Streamlit entry: sign-in and role-filtered navigation. No logic here."""

from __future__ import annotations

import streamlit as st

from app_pages import _shared
from app_pages._banners import render_switch_banners
from app_pages._search_box import render_search_box
from app_pages.registry import ADMIN_SECTIONS

st.set_page_config(page_title="Billing Ops Console", page_icon=":material/credit_card:", layout="wide")

identity = _shared.current_user()
if identity is None:
    # Every admin page's URL shows the sign-in form too, so a shared link keeps its path and query
    # parameters through sign-in and then opens (the page is chosen by url_path).
    navigation = st.navigation(
        [st.Page(_shared.render_sign_in, title="Sign in", url_path="sign-in", default=True)]
        + [st.Page(_shared.render_sign_in, title="Sign in", url_path=slug)
           for pages in ADMIN_SECTIONS.values() for _path, _title, slug in pages],
        position="hidden",
    )
elif not _shared.user_is_admin(identity):
    _shared.render_account_sidebar(identity)
    navigation = st.navigation([st.Page(_shared.render_no_access, title="No access", url_path="no-access")])
else:
    _shared.render_account_sidebar(identity)
    render_switch_banners()
    navigation = st.navigation(
        {section: [st.Page(path, title=title, url_path=slug) for path, title, slug in pages]
         for section, pages in ADMIN_SECTIONS.items()},
        expanded=True,  # every page stays one click away (the default folds a menu of more than 12)
    )
if identity is not None and _shared.user_is_admin(identity):
    render_search_box()  # after st.navigation: switching to the Search page needs it registered
navigation.run()
