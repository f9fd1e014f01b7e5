"""Contract tests with the real stripe SDK for the account settings the preflight
reads: Stripe Tax settings (pending until a head office is set) and payment method
domains (create, list by name, retrieve, update, validate, a failed verification)."""

from __future__ import annotations

import pytest
import stripe

from tests.conftest import EmulatorHandle
from tests.integration.stripe_target import StripeTarget


@pytest.fixture
def client(stripe_target: StripeTarget) -> stripe.StripeClient:
    return stripe_target.client("sk_test_settings")


@pytest.mark.emulator_only(reason="starts from an account with no tax head office, and sets one")
def test_tax_settings_pending_until_head_office_then_active(client: stripe.StripeClient) -> None:
    settings = client.v1.tax.settings.retrieve()
    assert isinstance(settings, stripe.tax.Settings)
    assert settings.object == "tax.settings" and settings.status == "pending"
    assert settings.head_office is None and settings.livemode is False
    assert settings.status_details.pending is not None
    assert settings.status_details.pending.missing_fields == ["head_office"]
    assert settings.defaults.tax_behavior is None and settings.defaults.tax_code is None
    updated = client.v1.tax.settings.update({"head_office": {"address": {"country": "US", "state": "CA"}},
                                             "defaults": {"tax_behavior": "exclusive"}})
    assert updated.status == "active" and updated.status_details.active is not None
    assert updated.head_office is not None and updated.head_office.address.country == "US"
    assert updated.head_office.address.city is None and updated.defaults.tax_behavior == "exclusive"
    assert client.v1.tax.settings.retrieve().status == "active"
    events = client.v1.events.list({"limit": 10}).data
    assert events[0].type == "tax.settings.updated"
    with pytest.raises(stripe.InvalidRequestError) as bad:
        client.v1.tax.settings.update({"defaults": {"tax_behavior": "sometimes"}})  # type: ignore[typeddict-item]
    assert bad.value.param == "defaults[tax_behavior]"


@pytest.mark.emulator_only(reason="sets a domain's validation outcome through /_emulator/")
def test_payment_method_domain_lifecycle(client: stripe.StripeClient, emulator: EmulatorHandle) -> None:
    domain = client.v1.payment_method_domains.create({"domain_name": "Pay.Example.com"})
    assert isinstance(domain, stripe.PaymentMethodDomain) and domain.id.startswith("pmd_")
    assert domain.domain_name == "pay.example.com" and domain.enabled is True and domain.livemode is False
    for method in ("apple_pay", "google_pay", "link", "paypal", "klarna", "amazon_pay"):
        assert getattr(domain, method).status == "active", method
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_method_domains.create({"domain_name": "pay.example.com"})
    other = client.v1.payment_method_domains.create({"domain_name": "other.example.com", "enabled": False})
    listed = client.v1.payment_method_domains.list({"domain_name": "pay.example.com"}).data
    assert [d.id for d in listed] == [domain.id]
    assert [d.id for d in client.v1.payment_method_domains.list({"enabled": False}).data] == [other.id]
    emulator.admin(f"payment_method_domains/{domain.id}/set",
                   {"apple_pay": "inactive", "error_message": "The domain association file was not found."})
    failed = client.v1.payment_method_domains.validate(domain.id)
    assert failed.apple_pay.status == "inactive" and failed.google_pay.status == "active"
    assert failed.apple_pay.status_details is not None
    assert "association file" in failed.apple_pay.status_details.error_message
    assert client.v1.payment_method_domains.update(domain.id, {"enabled": False}).enabled is False
    assert client.v1.payment_method_domains.retrieve(domain.id).enabled is False


def _targets() -> list[str]:
    import os

    return ["emulator", *(["stripe-test-account"] if os.environ.get("STRIPE_TEST_API_KEY") else [])]


@pytest.mark.parametrize("target", _targets())
def test_preflight_reads_are_read_only_on_either_target(target: str, emulator: EmulatorHandle) -> None:
    """Through our gateway, on the emulator and (with STRIPE_TEST_API_KEY) a real test-mode
    account: the tax and wallet checks only read, and see the shapes the SDK defines."""
    import os

    from services.config import load_settings
    from services.preflight_stripe import check_tax, check_wallets
    from services.stripe_gateway import StripeGateway

    env = {"STRIPE_API_KEY": os.environ.get("STRIPE_TEST_API_KEY", "sk_test_settings"), "STRIPE_MODE": "test",
           "STRIPE_AUTOMATIC_TAX_ENABLED": "true", "STRIPE_WALLETS_ENABLED": "true",
           "STRIPE_PAYMENT_METHOD_DOMAIN": "billing.example.com", "STRIPE_MAX_RETRIES": "0"}
    if target == "emulator":
        env["STRIPE_API_BASE"] = emulator.base_url
    settings = load_settings(env, env_file=None)
    gateway = StripeGateway(settings)
    before = len(emulator.requests()) if target == "emulator" else 0
    tax = gateway.retrieve_tax_settings()
    assert tax["object"] == "tax.settings" and tax["status"] in ("active", "pending")
    assert set(tax) >= {"defaults", "head_office", "livemode", "status", "status_details"}
    for domain in gateway.list_payment_method_domains():
        assert domain["object"] == "payment_method_domain"
        assert domain["apple_pay"]["status"] in ("active", "inactive")
    assert check_tax(gateway, settings).id == "stripe.tax"
    assert check_wallets(gateway, settings).id == "wallets.domain"
    if target == "emulator":
        methods = [r.get("method") for r in emulator.requests()[before:]]
        assert methods and set(methods) == {"GET"}, methods
