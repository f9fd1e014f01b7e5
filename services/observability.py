"""Sentry and logging set-up, both scrubbed of Stripe secrets and emails."""

from __future__ import annotations

import logging
import re
from typing import Any

from services.config import Settings

_SECRET = re.compile(r"(?:sk|rk|pk)_(?:test|live)_[0-9A-Za-z*]+|whsec_[0-9A-Za-z*]+")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_DSN = re.compile(r"https?://[0-9a-f]{8,}(?::[0-9a-f]+)?@[^\s\"']+")
REDACTED = "[redacted]"


def scrub_text(text: str) -> str:
    text = _SECRET.sub(REDACTED, text)
    text = _DSN.sub(REDACTED, text)
    return text


def scrub_text_and_emails(text: str) -> str:
    return _EMAIL.sub("[email]", scrub_text(text))


def scrub_value(value: Any, *, emails: bool = False) -> Any:
    """Recursively scrub strings inside dicts/lists (audit details, Sentry events)."""
    scrub = scrub_text_and_emails if emails else scrub_text
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_value(v, emails=emails) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v, emails=emails) for v in value]
    return value


def sentry_before_send(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any]:
    scrubbed: dict[str, Any] = scrub_value(event, emails=True)
    scrubbed.pop("user", None)
    return scrubbed


class ScrubbingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = scrub_text_and_emails(message)
        record.args = None
        if record.exc_text:
            record.exc_text = scrub_text_and_emails(record.exc_text)
        return True


class ScrubbingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub_text_and_emails(super().format(record))


def configure_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, ScrubbingFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(ScrubbingFilter())
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

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        send_default_pii=False,
        before_send=sentry_before_send,  # type: ignore[arg-type]
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
