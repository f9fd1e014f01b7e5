"""The Sentry scrubber built from the live settings, and URL password masking: every URL
password and every secret settings value leaves every part of an event."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from services.config import load_settings
from services.observability import REDACTED, ScrubbingFilter, ScrubbingFormatter, make_before_send
from services.redaction import mask_url_passwords

DB_PASSWORD = "CANARYpw-7f3a"
SETTINGS_ENV = {
    "DATABASE_URL": f"postgresql+psycopg://billing:{DB_PASSWORD}@db.internal:5432/billing",
    "STRIPE_API_KEY": "sk_test_CANARYunitkey42",
    "STRIPE_WEBHOOK_SECRETS": "whsec_CANARYone,whsec_CANARYtwo",
    "SENTRY_DSN": "https://CANARYpublic99@o1.ingest.sentry.io/42",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql+psycopg://u:SECRET@h/db", "postgresql+psycopg://u:***@h/db"),
        ("connect to redis://:s3cr3t@cache:6379/0 failed", "connect to redis://:***@cache:6379/0 failed"),
        ("a https://user:p@ss@host.io/x b", "a https://user:***@host.io/x b"),
        ("two: mysql://a:b@h1/x, amqp://c:d@h2//", "two: mysql://a:***@h1/x, amqp://c:***@h2//"),
        ("no password: postgresql://u@h/db and http://h/x?a=b@c", "no password: postgresql://u@h/db and "
                                                                   "http://h/x?a=b@c"),
    ],
)
def test_url_passwords_are_masked(text: str, expected: str) -> None:
    assert mask_url_passwords(text) == expected


def _event(secret_bits: list[str]) -> dict[str, Any]:
    """An event shaped like the SDK's, with secrets in every part people worry about."""
    joined = " ".join(secret_bits)
    return {
        "message": f"failed: {joined}",
        "logentry": {"message": "db %s", "params": [SETTINGS_ENV["DATABASE_URL"]]},
        "exception": {"values": [{"type": "OperationalError", "value": f"connection to {joined}",
                                  "stacktrace": {"frames": [{"function": "f", "vars": {
                                      "settings": f"Settings(database_url='{SETTINGS_ENV['DATABASE_URL']}')",
                                      "key": SETTINGS_ENV["STRIPE_API_KEY"], DB_PASSWORD: "as a key"}}]}}]},
        "breadcrumbs": {"values": [{"category": "log", "message": f"retrying {joined}", "data": {"url": joined}}]},
        "extra": {"sys.argv": ["billing-ops", joined], "nested": {"deep": [{"x": joined}]}},
        "request": {"url": "https://console/x", "data": {"password": DB_PASSWORD, "body": joined},
                    "headers": {"Authorization": f"Bearer {SETTINGS_ENV['STRIPE_API_KEY']}"}},
        "tags": {"db": SETTINGS_ENV["DATABASE_URL"]},
        "contexts": {"runtime": {"dsn": SETTINGS_ENV["SENTRY_DSN"]}},
        "user": {"email": "ops@example.com"},
        "level": "error",
    }


def test_before_send_removes_every_secret_settings_value_everywhere() -> None:
    settings = load_settings(SETTINGS_ENV, env_file=None)
    before_send = make_before_send(settings)
    # The bare values too (a psycopg message, a header), not only inside URLs.
    bits = [DB_PASSWORD, SETTINGS_ENV["DATABASE_URL"], "sk_test_CANARYunitkey42", "whsec_CANARYone",
            "whsec_CANARYtwo", "CANARYpublic99", "mysql://other:CANARYotherurl@h/db"]
    scrubbed = before_send(_event(bits), {})
    assert scrubbed is not None
    text = json.dumps(scrubbed)
    assert "CANARY" not in text
    assert REDACTED in scrubbed["exception"]["values"][0]["value"]
    assert "mysql://other:***@h/db" in scrubbed["message"]
    assert "user" not in scrubbed
    assert scrubbed["level"] == "error" and scrubbed["request"]["url"] == "https://console/x"


def test_before_send_without_settings_still_masks_patterns() -> None:
    scrubbed = make_before_send(None)({"message": "postgresql://u:CANARYx@h/db sk_live_CANARY1 whsec_CANARY2"}, {})
    assert scrubbed is not None and "CANARY" not in scrubbed["message"]


def test_log_filter_and_formatter_remove_settings_secrets() -> None:
    settings = load_settings(SETTINGS_ENV, env_file=None)
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "auth failed for %s (%s)",
                               (DB_PASSWORD, SETTINGS_ENV["DATABASE_URL"]), None)
    assert ScrubbingFilter(settings).filter(record)
    formatted = ScrubbingFormatter("%(message)s", settings).format(record)
    assert "CANARY" not in formatted and "auth failed for" in formatted
