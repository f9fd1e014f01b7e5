"""Typed settings from the environment (and `.env`), validated once at start-up.

Both go-live runbooks' variable names are accepted. A bad value raises
`SettingsError` whose message is one line naming the variable and the fix; it
never contains the value itself, because several of these values are secrets.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.config_constants import (
    AUDIT_KEY_MIN_BYTES,
    CONSOLE_EVENT_TYPES,
    DEFAULT_RECONCILE_INTERVAL_SECONDS,
    DEFAULT_RECONCILE_LOOKAHEAD_SECONDS,
    ENV_FILE_VARIABLE,
    KNOWN_INTERVALS,
    RATE_LIMIT_SHARE,
    REQUIRED_PLAN_INTERVALS,
    SETTING_FIXES,
    STRIPE_RATE_LIMITS,
    PriceMapping,
)
from services.config_validation import (
    SettingsError,
    env_name_for,
    explain,
    parse_price_mapping,
    publishable_key_mode,
    stripe_key_mode,
)
from services.redaction import mask_url_passwords, url_passwords

# Callers import these from here (the settings' one public module).
__all__ = [
    "AUDIT_KEY_MIN_BYTES", "CONSOLE_EVENT_TYPES", "DEFAULT_RECONCILE_INTERVAL_SECONDS",
    "DEFAULT_RECONCILE_LOOKAHEAD_SECONDS", "ENV_FILE_VARIABLE", "KNOWN_INTERVALS", "RATE_LIMIT_SHARE",
    "REQUIRED_PLAN_INTERVALS", "STRIPE_RATE_LIMITS", "PriceMapping", "Settings", "SettingsError", "load_settings",
    "publishable_key_mode", "stripe_key_mode",
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    database_url: str = Field("sqlite:///billing_ops.db", validation_alias="DATABASE_URL")
    stripe_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("STRIPE_API_KEY", "STRIPE_SECRET_KEY")
    )
    stripe_api_base: str | None = Field(None, validation_alias="STRIPE_API_BASE")
    stripe_mode: Literal["test", "live"] = Field("test", validation_alias="STRIPE_MODE")
    stripe_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRETS", "STRIPE_WEBHOOK_SECRET")
    )
    stripe_webhook_allowed_events: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(CONSOLE_EVENT_TYPES), validation_alias="STRIPE_WEBHOOK_ALLOWED_EVENTS"
    )
    # Optional override of the client-side limit (the emulator may be set lower).
    stripe_rate_limit_per_second: float | None = Field(None, validation_alias="STRIPE_RATE_LIMIT_PER_SECOND")
    stripe_max_retries: int = Field(4, ge=0, le=10, validation_alias="STRIPE_MAX_RETRIES")
    stripe_timeout_seconds: float = Field(30.0, gt=0, validation_alias="STRIPE_TIMEOUT_SECONDS")
    price_mapping: PriceMapping = Field(default_factory=dict)

    admin_emails: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias="ADMIN_EMAILS")
    admin_email_domain: str | None = Field(None, validation_alias="ADMIN_EMAIL_DOMAIN")
    disable_auth: bool = Field(False, validation_alias="DISABLE_AUTH")
    auth_credentials_file: str = Field("credentials.yaml", validation_alias="AUTH_CREDENTIALS_FILE")
    # Set only behind a reverse proxy that appends the client to this header (e.g. X-Forwarded-For):
    # failed sign-ins are then counted per real client instead of per proxy.
    auth_client_address_header: str | None = Field(None, validation_alias="AUTH_CLIENT_ADDRESS_HEADER")
    session_idle_timeout_seconds: int = Field(1800, gt=0, validation_alias="SESSION_IDLE_TIMEOUT_SECONDS")
    session_max_lifetime_seconds: int = Field(
        12 * 3600, gt=0, validation_alias="SESSION_MAX_LIFETIME_SECONDS"
    )

    reconcile_cron_enabled: bool = Field(False, validation_alias="RECONCILE_CRON_ENABLED")
    reconcile_cron_interval_seconds: int = Field(
        DEFAULT_RECONCILE_INTERVAL_SECONDS,
        gt=0,
        validation_alias=AliasChoices("RECONCILE_CRON_INTERVAL_SECONDS", "RECONCILE_CRON_INTERVAL"),
    )
    reconcile_cron_lookahead_seconds: int = Field(
        DEFAULT_RECONCILE_LOOKAHEAD_SECONDS,
        gt=0,
        validation_alias=AliasChoices("RECONCILE_CRON_LOOKAHEAD_SECONDS", "RECONCILE_CRON_LOOKAHEAD"),
    )

    sentry_dsn: SecretStr | None = Field(None, validation_alias="SENTRY_DSN")
    # Keys the audit chain (HMAC-SHA256) so only a holder of this key, kept outside the DB, can re-hash it.
    audit_hmac_key: SecretStr | None = Field(None, validation_alias="AUDIT_HMAC_KEY")
    sentry_environment: str | None = Field(None, validation_alias="SENTRY_ENVIRONMENT")
    sentry_dashboard_url: str | None = Field(None, validation_alias="SENTRY_DASHBOARD_URL")
    signoff_eng_leads: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="SIGNOFF_ENG_LEADS"
    )
    signoff_product_owners: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="SIGNOFF_PRODUCT_OWNERS"
    )

    # Numzy runbook section 2: the browser key must be present and of the same mode as the secret key.
    stripe_publishable_key: str | None = Field(None, validation_alias="STRIPE_PUBLISHABLE_KEY")
    # Numzy sections 2 and 10: automatic tax needs Stripe Tax active (head office set).
    stripe_automatic_tax_enabled: bool = Field(False, validation_alias="STRIPE_AUTOMATIC_TAX_ENABLED")
    # Numzy section 11: wallets at launch need the checkout domain registered for Apple Pay / Google Pay.
    stripe_wallets_enabled: bool = Field(False, validation_alias="STRIPE_WALLETS_ENABLED")
    # The domain customers pay on; defaults to the host of CONSOLE_WEBHOOK_URL.
    stripe_payment_method_domain: str | None = Field(None, validation_alias="STRIPE_PAYMENT_METHOD_DOMAIN")
    # Numzy section 2 (optional): worker/receiver Prometheus metrics. The runbook's name is accepted.
    metrics_enabled: bool = Field(
        False, validation_alias=AliasChoices("METRICS_ENABLED", "DRAMATIQ_PROMETHEUS_ENABLED")
    )
    # Where the preflight reads /metrics from; defaults to CONSOLE_WEBHOOK_URL's origin + /metrics.
    metrics_urls: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias="METRICS_URLS")
    # A deployment repository the preflight scans for committed secrets (`check --repo` overrides).
    deployment_repo_path: str | None = Field(None, validation_alias="DEPLOYMENT_REPO_PATH")

    # ALwrity §7: the SaaS's create-checkout-session URL the preflight bursts (test/staging only).
    checkout_probe_url: str | None = Field(None, validation_alias="CHECKOUT_PROBE_URL")
    checkout_probe_requests: int = Field(30, ge=1, le=200, validation_alias="CHECKOUT_PROBE_REQUESTS")
    checkout_probe_seconds: float = Field(3.0, gt=0, le=30, validation_alias="CHECKOUT_PROBE_SECONDS")

    # Issue 24 §3 (ALwrity §9): the price the guided live smoke test buys (the cheapest the account
    # sells), and where Checkout sends the buyer afterwards (success_url / cancel_url).
    stripe_smoke_test_price: str | None = Field(None, validation_alias="STRIPE_SMOKE_TEST_PRICE")
    smoke_test_return_url: str | None = Field(None, validation_alias="SMOKE_TEST_RETURN_URL")

    # Where Stripe should deliver events; the preflight looks for an endpoint with this URL.
    console_webhook_url: str | None = Field(None, validation_alias="CONSOLE_WEBHOOK_URL")
    # Process events right after storing them (demo) instead of leaving them to `worker`.
    webhook_process_inline: bool = Field(False, validation_alias="WEBHOOK_PROCESS_INLINE")
    # The receiver's server limits (`serve-webhooks`, uvicorn): open connections before new requests
    # get 503, seconds an idle keep-alive connection stays open, seconds a connection may take to send
    # its request line and headers (idle or slow connections are closed), header bytes per request,
    # and the listen backlog.
    webhook_limit_concurrency: int = Field(1000, gt=0, validation_alias="WEBHOOK_LIMIT_CONCURRENCY")
    webhook_keep_alive_seconds: int = Field(5, gt=0, validation_alias="WEBHOOK_KEEP_ALIVE_SECONDS")
    webhook_header_timeout_seconds: float = Field(10.0, gt=0, validation_alias="WEBHOOK_HEADER_TIMEOUT_SECONDS")
    webhook_max_header_bytes: int = Field(16384, ge=1024, validation_alias="WEBHOOK_MAX_HEADER_BYTES")
    webhook_backlog: int = Field(2048, gt=0, validation_alias="WEBHOOK_BACKLOG")
    # serve-webhooks stores deliveries through a writer process of each receiver process's own
    # (webhooks/writer_process.py), so the database work does not share the event loop's
    # interpreter lock; false: writer threads in the receiver process.
    webhook_writer_process: bool = Field(True, validation_alias="WEBHOOK_WRITER_PROCESS")
    # Policy text used to draft dispute evidence.
    refund_policy_text: str = Field(
        "Refunds are available within 14 days of a charge on request to support.",
        validation_alias="REFUND_POLICY_TEXT",
    )
    cancellation_policy_text: str = Field(
        "Subscriptions can be cancelled at any time from the billing portal; access continues "
        "until the end of the paid period and no further charges are made.",
        validation_alias="CANCELLATION_POLICY_TEXT",
    )

    # Alert thresholds (runbook section 8).
    alert_change_error_rate: float = Field(0.05, ge=0, le=1, validation_alias="ALERT_CHANGE_ERROR_RATE")
    alert_reconcile_applied_max: int = Field(50, ge=0, validation_alias="ALERT_RECONCILE_APPLIED_MAX")
    alert_invoice_failure_margin: float = Field(
        0.05, ge=0, le=1, validation_alias="ALERT_INVOICE_FAILURE_MARGIN"
    )
    alert_invoice_failure_baseline: float | None = Field(
        None, ge=0, le=1, validation_alias="ALERT_INVOICE_FAILURE_BASELINE"
    )
    alert_webhook_silence_minutes: int = Field(30, gt=0, validation_alias="ALERT_WEBHOOK_SILENCE_MINUTES")
    alert_invalid_signatures_per_hour: int = Field(
        10, ge=0, validation_alias="ALERT_INVALID_SIGNATURES_PER_HOUR"
    )
    # ALwrity §7-8 fraud signals (0 turns one off): card testing, dispute volume, EFW frequency.
    alert_card_declines_per_hour: int = Field(20, ge=0, validation_alias="ALERT_CARD_DECLINES_PER_HOUR")
    alert_small_charges_per_hour: int = Field(20, ge=0, validation_alias="ALERT_SMALL_CHARGES_PER_HOUR")
    alert_small_charge_max_minor: int = Field(100, ge=1, validation_alias="ALERT_SMALL_CHARGE_MAX_MINOR")
    alert_disputes_per_day: int = Field(5, ge=0, validation_alias="ALERT_DISPUTES_PER_DAY")
    alert_efws_per_day: int = Field(5, ge=0, validation_alias="ALERT_EFWS_PER_DAY")
    # A kill switch left on longer than this fires an alert (0 turns the alert off).
    alert_switch_paused_minutes: int = Field(60, ge=0, validation_alias="ALERT_SWITCH_PAUSED_MINUTES")

    @field_validator(
        "stripe_webhook_allowed_events",
        "metrics_urls",
        "admin_emails",
        "signoff_eng_leads",
        "signoff_product_owners",
        mode="before",
    )
    @classmethod
    def _split_comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("stripe_webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for secret in value or []:
            raw = secret.get_secret_value() if isinstance(secret, SecretStr) else str(secret)
            if not raw.startswith("whsec_"):
                raise ValueError("every webhook signing secret must start with whsec_")
        return value

    @field_validator("admin_emails", "signoff_eng_leads", "signoff_product_owners")
    @classmethod
    def _normalise_emails(cls, value: list[str]) -> list[str]:
        # Folded exactly as services.auth folds a signed-in email (NFKC + casefold, ASCII only).
        stripped = [email.strip(" \t\r\n\v\f") for email in value]
        if not all(email.isascii() for email in stripped):
            raise ValueError("every email must be plain ASCII (no look-alike letters)")
        return [unicodedata.normalize("NFKC", email).casefold() for email in stripped]

    @field_validator("stripe_publishable_key")
    @classmethod
    def _check_publishable_key(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.strip().startswith(("pk_test_", "pk_live_")):
            raise ValueError("the publishable key must start with pk_test_ or pk_live_")
        return value.strip()

    @field_validator("stripe_smoke_test_price")
    @classmethod
    def _check_smoke_test_price(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.strip().startswith("price_"):
            raise ValueError("not a price id")
        return value.strip()

    @field_validator("smoke_test_return_url")
    @classmethod
    def _check_return_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.strip().startswith(("https://", "http://")):
            raise ValueError("not an http(s) URL")
        return value.strip()

    @field_validator("audit_hmac_key")
    @classmethod
    def _check_audit_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < AUDIT_KEY_MIN_BYTES:
            raise ValueError(f"the audit key must be at least {AUDIT_KEY_MIN_BYTES} bytes")
        return value

    @field_validator("admin_email_domain")
    @classmethod
    def _check_domain(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.strip().isascii():
            raise ValueError("must be a plain ASCII domain (no look-alike letters)")
        domain = value.strip().casefold()
        if "@" in domain or "." not in domain or " " in domain:
            raise ValueError("must be a bare domain such as example.com")
        return domain

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("only SQLite and PostgreSQL URLs are supported")
        return value

    @field_validator("sentry_dsn")
    @classmethod
    def _check_sentry_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from sentry_sdk.utils import BadDsn, Dsn

        try:
            Dsn(value.get_secret_value().strip())
        except (BadDsn, ValueError, TypeError):  # the message quotes the DSN, so only this line is shown
            raise ValueError("not a valid Sentry DSN") from None
        return SecretStr(value.get_secret_value().strip())

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        key = self.stripe_api_key.get_secret_value() if self.stripe_api_key else None
        if key is not None:
            key_mode = stripe_key_mode(key)
            if key_mode is None:
                raise ValueError("STRIPE_API_KEY|the key must start with sk_test_, rk_test_, sk_live_ or rk_live_")
            if key_mode != self.stripe_mode:
                raise ValueError(
                    f"STRIPE_MODE|STRIPE_MODE is {self.stripe_mode} but the key is a {key_mode}-mode key"
                )
        if self.disable_auth and self.stripe_mode == "live":
            raise ValueError("DISABLE_AUTH|DISABLE_AUTH=true is refused in live mode")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        # load_settings() merges os.environ and .env itself, so only init values count here.
        return (init_settings,)

    def __repr_args__(self) -> Any:
        # repr()/str() of the settings (frame locals, log lines, tracebacks) never show a URL's
        # password; SecretStr fields already print as '**********'.
        for name, value in super().__repr_args__():
            if isinstance(value, str):
                value = mask_url_passwords(value)
            elif isinstance(value, list):
                value = [mask_url_passwords(v) if isinstance(v, str) else v for v in value]
            yield name, value

    # --- derived values -------------------------------------------------
    def secret_values(self) -> list[str]:
        """Every secret this configuration holds: each SecretStr field's value and each password
        inside a URL setting (DATABASE_URL), as written and URL-decoded. For scrubbers."""
        found: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, SecretStr):
                    found.append(item.get_secret_value())
                elif isinstance(item, str):
                    found.extend(url_passwords(item))
        if self.sentry_dsn is not None:
            from sentry_sdk.utils import Dsn

            dsn = Dsn(self.sentry_dsn.get_secret_value())
            found.extend(part for part in (dsn.public_key, dsn.secret_key) if part)
        # Longest first, so a secret containing another is masked whole.
        return sorted({item for item in found if item}, key=len, reverse=True)

    @property
    def stripe_secret(self) -> str | None:
        return self.stripe_api_key.get_secret_value() if self.stripe_api_key else None

    @property
    def audit_key_bytes(self) -> bytes | None:
        return self.audit_hmac_key.get_secret_value().encode() if self.audit_hmac_key else None

    @property
    def webhook_secret_values(self) -> list[str]:
        return [secret.get_secret_value() for secret in self.stripe_webhook_secrets]

    @property
    def stripe_requests_per_second(self) -> float:
        if self.stripe_rate_limit_per_second is not None:
            return self.stripe_rate_limit_per_second
        return STRIPE_RATE_LIMITS[self.stripe_mode] * RATE_LIMIT_SHARE

    def price_id(self, plan: str, interval: str) -> str | None:
        return self.price_mapping.get(plan.lower(), {}).get(interval.lower())

    def plan_for_price(self, price_id: str) -> tuple[str, str] | None:
        for plan, intervals in self.price_mapping.items():
            for interval, mapped in intervals.items():
                if mapped == price_id:
                    return plan, interval
        return None



def load_settings(environ: Mapping[str, str] | None = None, env_file: str | None = ".env") -> Settings:
    """Build and validate settings. `environ` replaces os.environ (tests).

    BILLING_OPS_ENV_FILE (or `billing-ops --env-file`) names the env file to read instead of
    ./.env, e.g. the one `billing-ops demo` writes so commands reach the running demo."""
    merged: dict[str, str] = {}
    chosen = (os.environ if environ is None else environ).get(ENV_FILE_VARIABLE)
    if chosen and env_file == ".env":
        if not os.path.isfile(chosen):
            raise SettingsError(f"{ENV_FILE_VARIABLE}: no such file {chosen}; fix: point it at an env file "
                                "(the demo writes demo_data/demo.env)")
        env_file = chosen
    if env_file and os.path.exists(env_file):
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    mode = (merged.get("STRIPE_MODE") or "test").strip().lower()
    if mode not in STRIPE_RATE_LIMITS:
        raise SettingsError(f"STRIPE_MODE: unknown mode; fix: {SETTING_FIXES['STRIPE_MODE']}")
    merged["STRIPE_MODE"] = mode
    price_mapping = parse_price_mapping(merged, mode)
    known = {env_name_for(Settings, name) for name in Settings.model_fields} | {
        choice
        for info in Settings.model_fields.values()
        if isinstance(info.validation_alias, AliasChoices)
        for choice in info.validation_alias.choices
        if isinstance(choice, str)
    }
    values = {k: v for k, v in merged.items() if k in known}
    try:
        values_any: dict[str, Any] = dict(values)
        return Settings(price_mapping=price_mapping, **values_any)
    except ValidationError as error:
        raise SettingsError(explain(Settings, error)) from None
