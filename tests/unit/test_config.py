"""Every settings error stops start-up with one line naming the variable and the fix,
never echoing the (possibly secret) value."""

from __future__ import annotations

import pytest

from services.config import SettingsError, load_settings

SECRET_LOOKING = "sk_live_SUPERSECRETvalue123"


def _error_for(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(env, env_file=None)
    message = str(caught.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


@pytest.mark.parametrize(
    ("env", "variable", "fix_hint"),
    [
        ({"STRIPE_MODE": "production"}, "STRIPE_MODE", "STRIPE_MODE=test or STRIPE_MODE=live"),
        ({"STRIPE_API_KEY": SECRET_LOOKING}, "STRIPE_MODE", "matching the key prefix"),
        ({"STRIPE_SECRET_KEY": "sk_test_abc", "STRIPE_MODE": "live"}, "STRIPE_MODE", "matching the key prefix"),
        ({"STRIPE_API_KEY": "pk_test_publishable"}, "STRIPE_API_KEY", "sk_test_"),
        (
            {"STRIPE_MODE": "live", "STRIPE_API_KEY": SECRET_LOOKING, "DISABLE_AUTH": "true"},
            "DISABLE_AUTH",
            "refused in live mode",
        ),
        ({"STRIPE_PLAN_PRICE_MAPPING_TEST": "{not json"}, "STRIPE_PLAN_PRICE_MAPPING_TEST", "JSON like"),
        ({"STRIPE_PLAN_PRICE_MAPPING_TEST": '["price_1"]'}, "STRIPE_PLAN_PRICE_MAPPING_TEST", "plan -> interval"),
        ({"STRIPE_PLAN_PRICE_MAPPING_TEST": '{"basic": {"weekly": "price_1"}}'}, "price mapping", "monthly or yearly"),
        ({"RECONCILE_CRON_INTERVAL_SECONDS": "7min"}, "RECONCILE_CRON_INTERVAL_SECONDS", "whole number"),
        ({"RECONCILE_CRON_LOOKAHEAD_SECONDS": "1.5"}, "RECONCILE_CRON_LOOKAHEAD_SECONDS", "whole number"),
        ({"RECONCILE_CRON_INTERVAL": "abc"}, "RECONCILE_CRON_INTERVAL", "whole number"),
        ({"STRIPE_WEBHOOK_SECRETS": "whsec_good,not_a_secret_abc"}, "STRIPE_WEBHOOK_SECRET", "whsec_"),
        ({"STRIPE_WEBHOOK_SECRET": "secret_without_prefix"}, "STRIPE_WEBHOOK_SECRET", "whsec_"),
        ({"ADMIN_EMAIL_DOMAIN": "admin@example.com"}, "ADMIN_EMAIL_DOMAIN", "bare domain"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL", "postgresql+psycopg"),
    ],
)
def test_bad_value_names_variable_and_fix(env: dict[str, str], variable: str, fix_hint: str) -> None:
    message = _error_for(env)
    assert message.startswith(variable), message
    assert fix_hint in message
    for value in env.values():
        if len(value) > 8 and value not in ("production",):
            assert value not in message


def test_secret_values_are_never_echoed() -> None:
    message = _error_for({"STRIPE_API_KEY": SECRET_LOOKING, "STRIPE_WEBHOOK_SECRETS": "whsec_abcdef123456"})
    assert "SUPERSECRET" not in message and "whsec_abcdef" not in message


def test_both_runbooks_names_are_accepted() -> None:
    settings = load_settings(
        {
            "STRIPE_SECRET_KEY": "sk_test_abc",
            "STRIPE_WEBHOOK_SECRET": "whsec_one",
            "STRIPE_PRICE_BASIC_MONTHLY": "price_b_m",
            "STRIPE_PLAN_PRICE_MAPPING_TEST": '{"pro": {"monthly": "price_p_m", "yearly": "price_p_y"}}',
            "STRIPE_PLAN_PRICE_MAPPING_LIVE": '{"pro": {"monthly": "price_live_should_not_apply"}}',
            "RECONCILE_CRON_INTERVAL": "300",
            "ADMIN_EMAILS": " Ops@Example.com , b@x.io ",
        },
        env_file=None,
    )
    assert settings.stripe_secret == "sk_test_abc"
    assert settings.webhook_secret_values == ["whsec_one"]
    assert settings.price_mapping == {
        "basic": {"monthly": "price_b_m"},
        "pro": {"monthly": "price_p_m", "yearly": "price_p_y"},
    }
    assert settings.plan_for_price("price_p_y") == ("pro", "yearly")
    assert settings.reconcile_cron_interval_seconds == 300
    assert settings.reconcile_cron_lookahead_seconds == 900
    assert settings.admin_emails == ["ops@example.com", "b@x.io"]


def test_rotation_list_and_rate_limit_share() -> None:
    settings = load_settings(
        {"STRIPE_WEBHOOK_SECRETS": "whsec_old, whsec_new", "STRIPE_MODE": "live", "STRIPE_API_KEY": "rk_live_x"},
        env_file=None,
    )
    assert settings.webhook_secret_values == ["whsec_old", "whsec_new"]
    assert settings.stripe_requests_per_second == 80.0  # 80 % of live's 100/s
    assert load_settings({}, env_file=None).stripe_requests_per_second == 20.0  # 80 % of test's 25/s


def test_dotenv_file_is_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env_file = tmp_path / ".env"
    env_file.write_text("STRIPE_API_KEY=sk_test_fromdotenv\nADMIN_EMAIL_DOMAIN=example.com\n")
    settings = load_settings({}, env_file=str(env_file))
    assert settings.stripe_secret == "sk_test_fromdotenv"
    assert settings.admin_email_domain == "example.com"


def test_secret_is_hidden_in_repr() -> None:
    settings = load_settings({"STRIPE_API_KEY": "sk_test_hidden123"}, env_file=None)
    assert "sk_test_hidden123" not in repr(settings)


DB_PASSWORD = "CANARYunitdbpass%40x"  # URL-encoded "@" inside: both spellings must stay hidden


def test_database_url_password_is_masked_in_repr_and_str() -> None:
    url = f"postgresql+psycopg://billing:{DB_PASSWORD}@db.internal:5432/billing"
    settings = load_settings({"DATABASE_URL": url, "METRICS_URLS": "https://m:CANARYmetricspw@m.example.io/metrics"},
                             env_file=None)
    assert settings.database_url == url  # the value itself is untouched (the engine needs it)
    for text in (repr(settings), str(settings), f"{settings!r}", repr([settings])):
        assert "CANARY" not in text
        assert "postgresql+psycopg://billing:***@db.internal:5432/billing" in text
        assert "https://m:***@m.example.io/metrics" in text


def test_secret_values_cover_secret_fields_and_the_database_password() -> None:
    settings = load_settings(
        {"DATABASE_URL": f"postgresql+psycopg://billing:{DB_PASSWORD}@db/billing", "STRIPE_API_KEY": "sk_test_abc123",
         "STRIPE_WEBHOOK_SECRETS": "whsec_one1,whsec_two2", "SENTRY_DSN": "https://pubkey123@o1.ingest.sentry.io/42"},
        env_file=None,
    )
    values = settings.secret_values()
    for expected in (DB_PASSWORD, "CANARYunitdbpass@x", "sk_test_abc123", "whsec_one1", "whsec_two2",
                     "https://pubkey123@o1.ingest.sentry.io/42", "pubkey123"):
        assert expected in values
    assert values == sorted(values, key=len, reverse=True)
    assert load_settings({}, env_file=None).secret_values() == []


@pytest.mark.parametrize("dsn", ["not a dsn", "https://o1.ingest.sentry.io/42", "ftp://key@host/1",
                                 "https://key@host/not-a-project/x", "http://key@host:port/1"])
def test_malformed_sentry_dsn_is_one_line(dsn: str) -> None:
    message = _error_for({"SENTRY_DSN": dsn})
    assert message.startswith("SENTRY_DSN: not a valid Sentry DSN; fix:")
    assert dsn not in message


def test_valid_sentry_dsn_is_accepted() -> None:
    settings = load_settings({"SENTRY_DSN": " https://pubkey123@o1.ingest.sentry.io/42 "}, env_file=None)
    assert settings.sentry_dsn is not None
    assert settings.sentry_dsn.get_secret_value() == "https://pubkey123@o1.ingest.sentry.io/42"
    assert load_settings({"SENTRY_DSN": ""}, env_file=None).sentry_dsn is None
