"""What every page shares: the runtime, the signed-in identity and the admin gate.

Gating never rests on navigation alone: each admin page calls
`require_admin()` first, which stops the script for anyone else.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import streamlit as st

from services import sign_in, web_sessions
from services.auth import Identity, is_admin, normalise_email, session_expired, set_identity_provider
from services.config import SettingsError
from services.errors import ConsoleError
from services.runtime import Runtime, get_runtime

T = TypeVar("T")

IDENTITY_KEY = "identity"
_FRAGMENT_RERUN_KEY = "_fragment_signed_out_rerun"
_HANDOVER_KEY = "_session_handover"  # the one-time token the browser exchanges for the session cookie
_IGNORED_COOKIE_KEY = "_ignored_session_cookie"  # refused (or signed out) once: not looked at again
_CLEAR_COOKIE_KEY = "_clear_session_cookie"
_LINK_QUERY_KEY = "_deep_link_query"  # a shared link's query parameters, kept through sign-in


def take_linked_query_param(name: str) -> str | None:
    """A query parameter of the link the person signed in through (Streamlit shows the default
    page at "/" and drops the query string once signed in), handed out once; None if none."""
    stashed = st.session_state.get(_LINK_QUERY_KEY) or {}
    value = stashed.pop(name, None)
    return value if isinstance(value, str) else None


def runtime() -> Runtime:
    return get_runtime()


def _identity_from_session() -> Identity | None:
    identity = st.session_state.get(IDENTITY_KEY)
    return identity if isinstance(identity, Identity) else None


set_identity_provider(_identity_from_session)


def _cookie_key() -> str | None:
    try:
        credentials = sign_in.load_credentials(runtime().settings)
    except SettingsError:
        return None
    return credentials.cookie_key if credentials is not None and credentials.cookie_key else None


def _browser_cookie() -> str | None:
    """The session cookie the browser sent with this page load (HttpOnly: scripts never see it)."""
    try:
        value = st.context.cookies.get(web_sessions.COOKIE_NAME)
    except Exception:  # noqa: BLE001 (no client context, e.g. a bare script run)
        return None
    return value if isinstance(value, str) else None


def sign_out(reason: str | None = None) -> None:
    """End the session: its server-side record is revoked (every tab, every replica), and the
    browser is asked to drop the cookie, which would be refused anyway."""
    identity = _identity_from_session()
    cookie = _browser_cookie()
    if identity is not None and identity.session_id:
        web_sessions.revoke(runtime().uow(), identity.session_id)
    if st.session_state.get("_oidc_signed_in"):
        st.session_state.clear()
        st.logout()
    st.session_state.clear()
    if cookie:
        st.session_state[_IGNORED_COOKIE_KEY] = cookie
    if identity is not None and identity.session_id or cookie:
        st.session_state[_CLEAR_COOKIE_KEY] = True
    if reason:
        st.session_state["signed_out_reason"] = reason


def _start_session(email: str, name: str | None, method: str) -> Identity | None:
    normalised = normalise_email(email)
    if normalised is None:
        return None
    now = time.time()
    session_id = None
    key = _cookie_key() if method == "password" else None
    if key is not None:  # a browser session that outlives this tab (services.web_sessions)
        session_id, token = web_sessions.create_session(runtime().uow(), runtime().settings, email=normalised,
                                                        name=name, method=method, now=now)
        st.session_state[_HANDOVER_KEY] = token
    identity = Identity(email=normalised, name=name, signed_in_at=now, last_seen_at=now, method=method,
                        session_id=session_id)
    st.session_state[IDENTITY_KEY] = identity
    st.session_state.pop(_FRAGMENT_RERUN_KEY, None)
    return identity


def _resume_from_cookie() -> Identity | None:
    """A refresh, a new tab or a shared link: the signed cookie's live session, else None
    (a forged, expired, revoked or unknown cookie is audited once and otherwise ignored)."""
    value = _browser_cookie()
    if not value or value == st.session_state.get(_IGNORED_COOKIE_KEY):
        return None
    key = _cookie_key()
    if key is None:
        return None
    uow, settings = runtime().uow(), runtime().settings
    session_id, reason = web_sessions.unsign(value, key)
    record = None
    if session_id is not None:
        record, reason = web_sessions.check(uow, settings, session_id, touch=True)
    if record is None:
        st.session_state[_IGNORED_COOKIE_KEY] = value
        st.session_state[_CLEAR_COOKIE_KEY] = True
        email = web_sessions.peek_email(uow, session_id) if session_id else None
        sign_in.record_session_refused(uow, email=email, reason=reason or "unknown", client=_client_address())
        message = web_sessions.REFUSAL_MESSAGES.get(reason or "")
        if message and reason != "revoked":
            st.session_state["signed_out_reason"] = message
        return None
    identity = Identity(email=record.email, name=record.name, signed_in_at=record.issued_at,
                        last_seen_at=time.time(), method=record.method, session_id=session_id)
    st.session_state[IDENTITY_KEY] = identity
    return identity


def current_user() -> Identity | None:
    """The signed-in identity, with idle timeout and absolute lifetime enforced."""
    identity = _identity_from_session()
    settings = runtime().settings
    if identity is None:
        if settings.disable_auth:  # refused in live mode at start-up (services.config)
            email = settings.admin_emails[0] if settings.admin_emails else "developer@localhost"
            return _start_session(email, "Local developer", "disabled")
        resumed = _resume_from_cookie()
        if resumed is not None:
            return resumed
        if _oidc_configured() and getattr(st.user, "is_logged_in", False):
            st.session_state["_oidc_signed_in"] = True
            email = str(st.user.get("email") or "")
            # Only an address the provider says it verified counts: an unverified one is anybody's claim.
            verified = st.user.get("email_verified") is True
            sign_in.record_external_sign_in(runtime().uow(), settings, email=email, method="oidc",
                                            client=_client_address(), email_verified=verified)
            method = "oidc" if verified else sign_in.METHOD_OIDC_UNVERIFIED
            identity = _start_session(email, st.user.get("name"), method)  # type: ignore[arg-type]
            issued = st.user.get("iat")
            if identity is not None and isinstance(issued, int | float):
                # Streamlit's own cookie outlives a refresh; the 12 h limit counts from the ID token's issue.
                identity = dataclasses.replace(identity, signed_in_at=float(issued))
                st.session_state[IDENTITY_KEY] = identity
                reason = session_expired(identity, settings)
                if reason:
                    sign_out(reason)
                    return None
            return identity
        return None
    if identity.session_id:
        # The browser session's record is the authority (shared by every tab): activity in any
        # tab keeps it alive, and sign-out anywhere ends it here too.
        record, refusal = web_sessions.check(runtime().uow(), settings, identity.session_id, touch=True)
        reason = None if record is not None else web_sessions.REFUSAL_MESSAGES.get(refusal or "", "You are signed out.")
    else:
        reason = session_expired(identity, settings)
    if reason:
        sign_out(reason)
        return None
    st.session_state[IDENTITY_KEY] = Identity(
        email=identity.email,
        name=identity.name,
        signed_in_at=identity.signed_in_at,
        last_seen_at=time.time(),
        method=identity.method,
        session_id=identity.session_id,
    )
    return identity


def render_session_cookie_scripts() -> None:
    """Hand the browser its session cookie (POST /auth/session with the one-time token), or ask it
    to drop one (POST /auth/sign-out). Same-origin requests to console_server.py's routes; the
    cookie itself is HttpOnly, so this page never sees it."""
    token = st.session_state.get(_HANDOVER_KEY)
    if token and web_sessions.handover_pending(runtime().uow(), token):
        st.html(_post_script("/auth/session", f"token={token}"), unsafe_allow_javascript=True)
    elif token:
        st.session_state.pop(_HANDOVER_KEY, None)
    if st.session_state.pop(_CLEAR_COOKIE_KEY, False):
        st.html(_post_script("/auth/sign-out", ""), unsafe_allow_javascript=True)


def _post_script(path: str, body: str) -> str:
    return (f"<script>fetch({json.dumps(path)}, {{method: 'POST', credentials: 'same-origin', headers: "
            f"{{'Content-Type': 'application/x-www-form-urlencoded'}}, body: {json.dumps(body)}}});</script>")


def fragment_user() -> Identity | None:
    """For `st.fragment(run_every=...)` bodies: call first, render nothing if it returns None.

    A timed re-run is not activity, so unlike `current_user` this never moves
    `last_seen_at`: a page left open still reaches the idle timeout. Once the
    session is over (or was never an admin one) it signs out, says so, and
    re-runs the whole app, which shows the sign-in page and no fragments.
    """
    identity = _identity_from_session()
    if identity is None:
        reason: str | None = "You are signed out."
    elif identity.session_id:
        record, refusal = web_sessions.check(runtime().uow(), runtime().settings, identity.session_id, touch=False)
        reason = None if record is not None else web_sessions.REFUSAL_MESSAGES.get(refusal or "", "You are signed out.")
    else:
        reason = session_expired(identity, runtime().settings)
    if reason is None and user_is_admin(identity):
        return identity
    already_rerun = st.session_state.get(_FRAGMENT_RERUN_KEY)
    sign_out(reason or "You are signed out.")
    st.info("Signed out. Sign in again to see this page.")
    if not already_rerun:  # once: the re-run shows the sign-in page, so no fragment asks again
        st.session_state[_FRAGMENT_RERUN_KEY] = True
        st.rerun()
    return None


def user_is_admin(identity: Identity | None) -> bool:
    return (identity is not None and identity.method != sign_in.METHOD_OIDC_UNVERIFIED
            and is_admin(identity.email, runtime().settings))


def require_admin() -> Identity:
    """Stop the page for anyone who is not a signed-in admin."""
    identity = current_user()
    if not user_is_admin(identity):
        page = _page_name()
        audited = st.session_state.setdefault("_denied_pages_audited", set())
        if page not in audited:  # every refusal is audited, once per page per browser session
            audited.add(page)
            sign_in.record_page_denied(runtime().uow(), email=identity.email if identity else None, page=page,
                                       client=_client_address())
        st.error("No access. This console is for the billing team's admins.")
        st.stop()
    assert identity is not None
    return identity


def _page_name() -> str:
    """The admin page being refused (its script's name), for the audit row."""
    import inspect

    for frame in inspect.stack(context=0)[2:6]:
        path = Path(frame.filename)
        if path.parent.name == "app_pages" and not path.name.startswith("_"):
            return f"page:{path.stem}"
    return "page:unknown"


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return False


def _client_address() -> str | None:
    """The connection's address (None on loopback); only used to count failed sign-ins per client."""
    try:
        address, headers = st.context.ip_address, dict(st.context.headers)
    except Exception:  # noqa: BLE001 (no client context, e.g. a bare script run)
        return None
    if not isinstance(address, str):  # AppTest's context is a stand-in
        address = None
    headers = {k: v for k, v in headers.items() if isinstance(k, str) and isinstance(v, str)}
    return sign_in.client_address(address, headers, runtime().settings)


def render_sign_in() -> None:
    """Sign-in page: OIDC when configured in secrets.toml, else the credentials file.

    The password form is the console's own (services.sign_in checks it, with
    lockout and audit rows). A successful sign-in starts a browser session
    (services.web_sessions) whose signed HttpOnly cookie is set by console_server.py's
    POST /auth/session; only that cookie, unexpired and unrevoked, is ever honoured.
    """
    st.title("Billing Ops Console")
    render_session_cookie_scripts()
    if _LINK_QUERY_KEY not in st.session_state:  # the link this visit started from, kept through sign-in
        st.session_state[_LINK_QUERY_KEY] = {k: v for k, v in st.query_params.to_dict().items() if len(v) <= 255}
    reason = st.session_state.pop("signed_out_reason", None)
    if reason:
        st.info(reason)
    if _oidc_configured():
        st.write("Sign in with your company account.")
        if st.button("Sign in", type="primary"):
            st.login()
        return
    settings = runtime().settings
    try:
        credentials = sign_in.load_credentials(settings)
    except SettingsError as error:
        st.error(f"Sign-in is not configured correctly: {error}")
        return
    if credentials is None:
        st.error(
            f"No sign-in is configured: create {Path(settings.auth_credentials_file).name} (see README) or "
            "configure OIDC in .streamlit/secrets.toml."
        )
        return
    with st.form("sign_in"):
        st.subheader("Login")
        username = st.text_input("Username", autocomplete="off")
        password = st.text_input("Password", type="password", autocomplete="off")
        submitted = st.form_submit_button("Login")
    if not submitted:
        return
    if not username.strip() or not password:  # nothing was tried, so nothing counts towards a lockout
        st.error("Enter your email/username and password.")
        return
    outcome = sign_in.attempt_sign_in(
        runtime().uow(), settings, credentials, username=username, password=password, client=_client_address()
    )
    if outcome.email is None:
        st.error(outcome.message or sign_in.BAD_CREDENTIALS_MESSAGE)
        return
    _start_session(outcome.email, outcome.name, "password")
    st.rerun()


def render_no_access() -> None:
    identity = current_user()
    st.title("No access")
    if identity is not None and identity.method == sign_in.METHOD_OIDC_UNVERIFIED:
        st.write(f"Your identity provider has not verified **{plain(identity.email)}**; only a verified "
                 "address can be given access to this console.")
    st.write(
        f"You are signed in as **{plain(identity.email if identity else 'unknown')}**, which is not an admin of this "
        "console. Ask the billing team to add you to ADMIN_EMAILS."
    )
    if st.button("Sign out"):
        sign_out()
        st.rerun()


def render_account_sidebar(identity: Identity) -> None:
    render_session_cookie_scripts()
    with st.sidebar:
        settings = runtime().settings
        st.caption(f"Signed in as {plain(identity.email)} · Stripe {settings.stripe_mode} mode")
        if st.button("Sign out", key="sidebar_sign_out"):
            sign_out("You are signed out.")
            st.rerun()


def show_error(error: Exception) -> None:
    """One clear message for a refused or failed action; never a traceback."""
    message = error.message if isinstance(error, ConsoleError) else str(error) or error.__class__.__name__
    st.error(plain(message))  # messages can quote customer or Stripe text


def flash(name: str, message: str) -> None:
    """Keep an action's outcome for the next run (the page reruns after an action)."""
    st.session_state[f"{name}_message"] = message


def flash_error(name: str, error: Exception) -> None:
    """Keep a refused or failed action's words for the next run (escaped when shown)."""
    st.session_state[f"{name}_error"] = error.message if isinstance(error, ConsoleError) else (
        str(error) or error.__class__.__name__)


def show_flash(name: str, *, refused: str) -> None:
    """Show, once, what `flash`/`flash_error` kept: success as is, a refusal after `refused`."""
    message = st.session_state.pop(f"{name}_message", None)
    if message:
        st.success(message)
    partly = st.session_state.pop(f"{name}_partly", None)
    if partly:  # an action that did part of its work (a refund sent, one of two blocks refused)
        st.warning(partly)
    error = st.session_state.pop(f"{name}_error", None)
    if error:
        st.error(f"{refused}: {plain(error)}")


def run_action(name: str, action: Callable[[], T], success: str | Callable[[T], str], *,
               before: Callable[[], None] | None = None, after: Callable[[], None] | None = None,
               failure: Callable[[T], str | None] | None = None,
               partly: Callable[[T], bool] | None = None) -> None:
    """Run one page action (from a button or a confirm dialog) and rerun the page.

    `before` runs first (e.g. closing the confirm dialog), `after` once the action returned or was
    refused (e.g. clearing cached reads). The outcome is kept with
    `flash`/`flash_error` under `name` and shown once by `show_flash(name, ...)` on the next run,
    so nothing is written during render and every page words success and refusal the same way.
    A ConsoleError (a refusal, Stripe unavailable, a conflict) is flashed; anything else is a bug
    and propagates. `failure`, when given, reads a returned result that did not succeed (e.g. a run
    that stopped half-way) and gives its words, flashed like a refusal; `partly(result)` true: the
    outcome is shown as a warning (part of it failed)."""
    if before is not None:
        before()
    try:
        result = action()
    except ConsoleError as error:
        flash_error(name, error)
    else:
        failed = failure(result) if failure is not None else None
        if failed:
            flash_error(name, ConsoleError(failed))
        else:
            words = success(result) if callable(success) else success
            if partly is not None and partly(result):
                st.session_state[f"{name}_partly"] = words
            else:
                flash(name, words)
    if after is not None:
        after()
    st.rerun()


def stripe_dashboard_url(object_path: str) -> str:
    """Link to an object in the Stripe Dashboard, in the right mode."""
    prefix = "" if runtime().settings.stripe_mode == "live" else "test/"
    return f"https://dashboard.stripe.com/{prefix}{object_path}"


# Every ASCII punctuation character may be backslash-escaped in CommonMark, and an escaped one is
# shown literally; these are the ones GitHub-flavoured Markdown and Streamlit's additions give a
# meaning (links and images, emphasis, code, headings, lists, tables, strikethrough, raw HTML,
# entities, autolinks such as http:// and www., :color[...] directives, :emoji: and $LaTeX$).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:&=^@])")
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x85\u2028\u2029]+")
# GFM's literal autolinks (http://, www., name@host.tld) are found in the text after escapes are
# resolved, so escaping cannot stop them; an invisible WORD JOINER before every ":", "." and "@"
# does (the text reads the same; a copy carries the invisible joiners).
WORD_JOINER = "\u2060"
# GFM autolinks `scheme://…` and `www.…` even after escapes: an invisible word joiner between
# the scheme and its colon (or after "www") stops it. Emails are left exact (ops copy them; an
# autolinked email is only a mailto: link, no fetch and no other site).
_AUTOLINK_BREAK = re.compile(r"(?i)(?<=[a-z])(?=\\:(?:\\?/){2})|(?<=\bwww)(?=\\\.)")


def plain(value: object) -> str:
    """`value` (customer- or Stripe-controlled text) escaped for any Markdown-rendering element
    (st.markdown/write/caption/info/success/warning/error, headings, labels, help), so it shows
    exactly as typed: no link (not even an autolinked URL; an email may become a mailto: link),
    image, HTML, formatting or new block. Line breaks become spaces.
    Not for plain-text elements (st.text, st.code, dataframes, selectbox options), which
    would show the backslashes."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(value)))
    return _AUTOLINK_BREAK.sub(WORD_JOINER, escaped)
