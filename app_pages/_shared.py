"""What every page shares: the runtime, the signed-in identity and the admin gate.

Gating never rests on navigation alone: each admin page calls
`require_admin()` first, which stops the script for anyone else.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from services.auth import Identity, is_admin, normalise_email, session_expired, set_identity_provider
from services.runtime import Runtime, get_runtime

IDENTITY_KEY = "identity"


def runtime() -> Runtime:
    return get_runtime()


def _identity_from_session() -> Identity | None:
    identity = st.session_state.get(IDENTITY_KEY)
    return identity if isinstance(identity, Identity) else None


set_identity_provider(_identity_from_session)


def sign_out(reason: str | None = None) -> None:
    if st.session_state.get("_oidc_signed_in"):
        st.session_state.clear()
        st.logout()
    st.session_state.clear()
    if reason:
        st.session_state["signed_out_reason"] = reason


def _start_session(email: str, name: str | None, method: str) -> Identity | None:
    normalised = normalise_email(email)
    if normalised is None:
        return None
    now = time.time()
    identity = Identity(email=normalised, name=name, signed_in_at=now, last_seen_at=now, method=method)
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
        if _oidc_configured() and getattr(st.user, "is_logged_in", False):
            st.session_state["_oidc_signed_in"] = True
            return _start_session(str(st.user.get("email") or ""), st.user.get("name"), "oidc")  # type: ignore[arg-type]
        return None
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
    )
    return identity


def user_is_admin(identity: Identity | None) -> bool:
    return identity is not None and is_admin(identity.email, runtime().settings)


def require_admin() -> Identity:
    """Stop the page for anyone who is not a signed-in admin."""
    identity = current_user()
    if not user_is_admin(identity):
        st.error("No access. This console is for the billing team's admins.")
        st.stop()
    assert identity is not None
    return identity


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return False


def render_sign_in() -> None:
    """Sign-in page: OIDC when configured in secrets.toml, else the credentials file."""
    st.title("Billing Ops Console")
    reason = st.session_state.pop("signed_out_reason", None)
    if reason:
        st.info(reason)
    if _oidc_configured():
        st.write("Sign in with your company account.")
        if st.button("Sign in", type="primary"):
            st.login()
        return
    settings = runtime().settings
    credentials_file = Path(settings.auth_credentials_file)
    if not credentials_file.exists():
        st.error(
            f"No sign-in is configured: create {credentials_file.name} (see README) or configure OIDC "
            "in .streamlit/secrets.toml."
        )
        return
    import streamlit_authenticator as stauth
    import yaml

    config = yaml.safe_load(credentials_file.read_text())
    authenticator = stauth.Authenticate(
        config["credentials"],
        config.get("cookie", {}).get("name", "billing_ops"),
        config.get("cookie", {}).get("key", "billing-ops-cookie-key"),
        cookie_expiry_days=0,  # no remember-me: sessions end with the idle timeout
        auto_hash=False,
    )
    try:
        authenticator.login(location="main", max_login_attempts=5)
    except Exception as error:  # the library raises on too many attempts and bad input
        st.error(str(error).split("\n")[0])
        return
    status = st.session_state.get("authentication_status")
    if status:
        email = st.session_state.get("email") or ""
        if _start_session(email, st.session_state.get("name"), "password") is None:
            st.error("Your account has no valid email address; ask an admin to fix it.")
            return
        st.rerun()
    elif status is False:
        st.error("Email/username or password is incorrect.")


def render_no_access() -> None:
    identity = current_user()
    st.title("No access")
    st.write(
        f"You are signed in as **{identity.email if identity else 'unknown'}**, which is not an admin of this "
        "console. Ask the billing team to add you to ADMIN_EMAILS."
    )
    if st.button("Sign out"):
        sign_out()
        st.rerun()


def render_account_sidebar(identity: Identity) -> None:
    with st.sidebar:
        settings = runtime().settings
        st.caption(f"Signed in as {identity.email} · Stripe {settings.stripe_mode} mode")
        if st.button("Sign out", key="sidebar_sign_out"):
            sign_out("You are signed out.")
            st.rerun()


def show_error(error: Exception) -> None:
    """One clear message for a refused or failed action; never a traceback."""
    message = getattr(error, "message", None) or str(error) or error.__class__.__name__
    st.error(message)


def stripe_dashboard_url(object_path: str) -> str:
    """Link to an object in the Stripe Dashboard, in the right mode."""
    prefix = "" if runtime().settings.stripe_mode == "live" else "test/"
    return f"https://dashboard.stripe.com/{prefix}{object_path}"
