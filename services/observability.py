"""Sentry and logging set-up, both scrubbed of Stripe secrets, URL passwords and emails.

Sentry runs without frame locals (`include_local_variables=False`), and every event goes
through `make_before_send(settings)`, which also removes each value the live settings hold
as a secret (SecretStr fields, the DATABASE_URL password) wherever it appears in the event."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from services.config import Settings
from services.redaction import mask_url_passwords

_SECRET = re.compile(r"(?:sk|rk|pk)_(?:test|live)_[0-9A-Za-z*]+|whsec_[0-9A-Za-z*]+")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_DSN = re.compile(r"https?://[0-9a-f]{8,}(?::[0-9a-f]+)?@[^\s\"']+")
REDACTED = "[redacted]"


def scrub_text(text: str) -> str:
    text = _SECRET.sub(REDACTED, text)
    text = _DSN.sub(REDACTED, text)
    return mask_url_passwords(text)


def _remove_values(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def scrub_text_and_emails(text: str) -> str:
    return _EMAIL.sub("[email]", scrub_text(text))


def scrub_value(value: Any, *, emails: bool = False, secrets: tuple[str, ...] = ()) -> Any:
    """Recursively scrub strings (keys too) inside dicts/lists (audit details, Sentry events);
    `secrets` are exact values to remove as well (longest first)."""
    if isinstance(value, str):
        text = _remove_values(value, secrets)
        return scrub_text_and_emails(text) if emails else scrub_text(text)
    if isinstance(value, dict):
        return {scrub_value(k, emails=emails, secrets=secrets): scrub_value(v, emails=emails, secrets=secrets)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v, emails=emails, secrets=secrets) for v in value]
    return value


SentryHook = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]


def make_before_send(settings: Settings | None) -> SentryHook:
    """The Sentry `before_send` for these settings: every string in the event (message,
    exception values, frames, breadcrumbs, extra, request, tags, contexts) loses Stripe keys,
    `whsec_` secrets, DSNs, URL passwords, emails and each secret value of `settings`."""
    secrets = tuple(settings.secret_values()) if settings is not None else ()

    def before_send(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any] | None:
        scrubbed: dict[str, Any] = scrub_value(event, emails=True, secrets=secrets)
        scrubbed.pop("user", None)
        return scrubbed

    return before_send


def sentry_before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """The settings-independent scrubber (patterns only); prefer make_before_send(settings)."""
    return make_before_send(None)(event, hint)


class ScrubbingFilter(logging.Filter):
    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.secrets = tuple(settings.secret_values()) if settings is not None else ()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = scrub_text_and_emails(_remove_values(message, self.secrets))
        record.args = None
        if record.exc_text:
            record.exc_text = scrub_text_and_emails(_remove_values(record.exc_text, self.secrets))
        return True


class ScrubbingFormatter(logging.Formatter):
    def __init__(self, fmt: str | None = None, settings: Settings | None = None) -> None:
        super().__init__(fmt)
        self.secrets = tuple(settings.secret_values()) if settings is not None else ()

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text_and_emails(_remove_values(super().format(record), self.secrets))


def configure_logging(level: int = logging.INFO, settings: Settings | None = None) -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, ScrubbingFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", settings))
    handler.addFilter(ScrubbingFilter(settings))
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party HTTP clients log URLs and headers at DEBUG; keep them quiet.
    # Alembic's INFO lines ("setup plugin ...", "Context impl ...") are noise in command output.
    for noisy in ("httpx", "httpcore", "stripe", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def init_sentry(settings: Settings, **extra: Any) -> bool:
    """Start Sentry when SENTRY_DSN is set; `extra` lets tests pass a transport."""
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk

    before_send = make_before_send(settings)
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        send_default_pii=False,
        # Frame locals would carry the settings, engines and request bodies; they are never sent.
        include_local_variables=False,
        before_send=before_send,  # type: ignore[arg-type]
        before_send_transaction=before_send,  # type: ignore[arg-type]
        environment=settings.sentry_environment or settings.stripe_mode,
        traces_sample_rate=0.0,
        **extra,
    )
    return True


def capture_alert(message: str, tags: dict[str, str], level: str = "warning") -> None:
    """Send an alert to Sentry as a message with tags (no-op when Sentry is off)."""
    import sentry_sdk

    if not sentry_sdk.is_initialized():
        return
    with sentry_sdk.new_scope() as scope:
        for key, value in tags.items():
            scope.set_tag(key, value)
        sentry_sdk.capture_message(scrub_text_and_emails(message), level=level)  # type: ignore[arg-type]
