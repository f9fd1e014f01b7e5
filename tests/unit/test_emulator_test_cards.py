"""The emulator's table of Stripe's test cards: tokens and numbers name the same cards."""

from __future__ import annotations

import pytest

from emulator.engine import Engine
from emulator.payments import test_cards
from emulator.wire.protocol import StripeApiError


def test_every_card_is_found_by_token_and_by_number() -> None:
    for token, card in test_cards.CARDS.items():
        assert test_cards.lookup(token) == (token, card)
        by_number = test_cards.lookup(card.number)
        assert by_number is not None and by_number[1].number == card.number
        assert card.brand != "unknown", token
    assert test_cards.lookup("4000 0000 0000 9995") == ("pm_card_chargeDeclinedInsufficientFunds",
                                                        test_cards.CARDS["pm_card_chargeDeclinedInsufficientFunds"])
    assert test_cards.lookup("4000000000005423")[0] == "pm_card_createIssuerFraudRecord"  # type: ignore[index]
    assert test_cards.lookup("4000002500003155")[0] == "pm_card_authenticationRequiredOnSetup"  # type: ignore[index]


def test_the_early_fraud_warning_card_is_stripes_issuer_fraud_record_token() -> None:
    efw = [token for token, card in test_cards.CARDS.items() if card.behaviour == "efw"]
    assert efw == ["pm_card_createIssuerFraudRecord"]
    assert test_cards.CARDS["pm_card_createIssuerFraudRecord"].number == "4000000000005423"


@pytest.mark.parametrize("token", ["pm_card_unknownToken", "pm_card_visa_typo", "pm_card_"])
def test_a_token_stripe_does_not_have_is_refused_with_stripes_error(token: str) -> None:
    assert test_cards.lookup(token) is None and not test_cards.is_test_card(token)
    with pytest.raises(StripeApiError) as refused:
        Engine().card_payment_method(token)
    assert refused.value.body == {"type": "invalid_request_error", "message": f"No such PaymentMethod: '{token}'",
                                  "code": "resource_missing", "param": "payment_method",
                                  "doc_url": "https://docs.stripe.com/error-codes/resource-missing"}


def test_declining_cards_name_their_reason() -> None:
    kinds = ("declined", "sca_then_decline", "blocked")
    declining = {t: c for t, c in test_cards.CARDS.items() if c.behaviour in kinds}
    assert all(c.decline is not None for c in declining.values())
    reasons = {c.decline.decline_code for c in declining.values() if c.decline}
    assert {"generic_decline", "insufficient_funds", "lost_card", "stolen_card", "expired_card", "incorrect_cvc",
            "processing_error", "fraudulent"} <= reasons
