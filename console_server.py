"""The console as an ASGI app: Streamlit's own server (`st.App`) serving app.py, plus
console_routes.py's `POST /auth/session` and `POST /auth/sign-out` on the same origin.

`billing-ops run` and `billing-ops demo` start it with `streamlit run console_server.py`
(Streamlit finds `app` below and serves it with uvicorn); `uvicorn console_server:app`
works too. AppTests keep running app.py itself.
"""

from __future__ import annotations

import streamlit as st

from console_routes import ROUTES

app = st.App("app.py", routes=ROUTES)
