"""Search (admin): one box for customers, subscriptions, invoices, charges, disputes and early
fraud warnings by id, email, name, card last4 or amount; each hit opens its page."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages._shared import plain, require_admin, runtime, show_error
from app_pages.registry import page_file
from services import search

identity = require_admin()
rt = runtime()
st.title("Search")
query = st.text_input("Search the billing DB", value=st.query_params.get("q", ""),
                      placeholder="email, cus_/sub_/in_/ch_/dp_/issfr_ id, card last4, amount (29.00), name")
if query != st.query_params.get("q", ""):
    st.query_params["q"] = query  # the URL carries the search, so it can be shared
if not query.strip():
    st.caption("Type an email, a Stripe id, the last 4 digits of a card, an amount or part of a name.")
    st.stop()
try:
    hits = search.search(rt.uow(), query)
except search.SearchError as error:
    show_error(error)
    st.stop()
if not hits:
    st.info("Nothing in the billing DB matches that.")
    st.stop()
st.caption(f"{len(hits)} hit(s).")
st.dataframe(pd.DataFrame([hit.as_row() for hit in hits]), hide_index=True)
for hit in hits:
    if hit.page:
        st.page_link(page_file(hit.page), label=f"Open {hit.kind.replace('_', ' ')} {plain(hit.id)}",
                     query_params=hit.query_params)
