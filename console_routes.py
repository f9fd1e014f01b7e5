"""The console's own HTTP routes, served beside Streamlit by console_server.py (`st.App`).

`billing-ops run` / `billing-ops demo` start it with `streamlit run console_server.py`
(Streamlit detects its `app` and serves it with uvicorn). The routes exist because
a Streamlit script cannot set an HttpOnly cookie:

- `POST /auth/session` (form field `token`): exchanges the one-time token the sign-in
  page handed over for the signed session cookie (HttpOnly, SameSite=Strict, Secure over https).
- `POST /auth/sign-out`: revokes the cookie's session and deletes the cookie.

CSRF: both need an `Origin` equal to the console's own origin (and, when the browser sends
it, `Sec-Fetch-Site: same-origin`); the cookie is SameSite=Strict; and a session cookie is
only ever minted from a single-use token that lives 60 seconds.

Every refusal is audited (`services/refusal_audit.py`): the first of a kind per client at once,
its repeats within a minute as one row with their count.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services import sign_in, web_sessions
from services.runtime import get_runtime


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if not origin or not host:
        return False
    if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
        return False
    return origin == f"{request.url.scheme}://{host}"


def _client(request: Request) -> str | None:
    address = request.client.host if request.client else None
    if address in {"127.0.0.1", "::1"}:
        address = None  # as Streamlit reports loopback (services.sign_in.client_key)
    return sign_in.client_address(address, dict(request.headers), get_runtime().settings)


def _refuse(request: Request, action: str, reason: str) -> Response:
    # Audited, but a flood of the same refusal from one client writes one row and a count per window.
    get_runtime().refusal_audit.refuse(action=action, target=sign_in.client_key(_client(request)), reason=reason)
    return Response(status_code=403, content=f"refused: {reason}\n", media_type="text/plain")


def _cookie_key() -> str | None:
    credentials = sign_in.load_credentials(get_runtime().settings)
    return credentials.cookie_key if credentials is not None and credentials.cookie_key else None


def _start(request: Request, token: str) -> Response:
    if not _same_origin(request):
        return _refuse(request, sign_in.ACTION_SESSION_REFUSED, "cross-origin handover")
    key = _cookie_key()
    runtime = get_runtime()
    consumed = web_sessions.consume_handover(runtime.uow(), runtime.settings, token) if key else None
    if key is None or consumed is None:
        return _refuse(request, sign_in.ACTION_SESSION_REFUSED, "unknown, used or expired handover token")
    session_id, record = consumed
    remaining = int(record.issued_at + runtime.settings.session_max_lifetime_seconds - record.last_seen)
    response = Response(status_code=204)
    response.headers["set-cookie"] = web_sessions.cookie_header(
        web_sessions.sign(session_id, key), max_age=max(remaining, 0), secure=request.url.scheme == "https")
    response.headers["cache-control"] = "no-store"
    return response


def _sign_out(request: Request) -> Response:
    if not _same_origin(request):
        return _refuse(request, sign_in.ACTION_SIGN_OUT, "cross-origin sign-out")
    key = _cookie_key()
    value = request.cookies.get(web_sessions.COOKIE_NAME)
    if key and value:
        session_id, _ = web_sessions.unsign(value, key)
        if session_id:
            web_sessions.revoke(get_runtime().uow(), session_id)
    response = Response(status_code=204)
    response.headers["set-cookie"] = web_sessions.cookie_header(
        "", max_age=0, secure=request.url.scheme == "https")
    response.headers["cache-control"] = "no-store"
    return response


async def session_route(request: Request) -> Response:
    form = await request.form()
    token = form.get("token")
    return await run_in_threadpool(_start, request, token if isinstance(token, str) else "")


async def sign_out_route(request: Request) -> Response:
    return await run_in_threadpool(_sign_out, request)


ROUTES = [
    Route("/auth/session", session_route, methods=["POST"]),
    Route("/auth/sign-out", sign_out_route, methods=["POST"]),
]
