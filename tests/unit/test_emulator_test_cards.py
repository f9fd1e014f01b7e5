"""The emulator's table of Stripe's test cards: tokens and numbers name the same cards."""

from __future__ import annotations

from emulator.payments import test_cards


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
    assert test_cards.lookup("pm_card_createEarlyFraudWarning") is None  # not a Stripe token


def test_declining_cards_name_their_reason() -> None:
    kinds = ("declined", "sca_then_decline", "blocked")
    declining = {t: c for t, c in test_cards.CARDS.items() if c.behaviour in kinds}
    assert all(c.decline is not None for c in declining.values())
    reasons = {c.decline.decline_code for c in declining.values() if c.decline}
    assert {"generic_decline", "insufficient_funds", "lost_card", "stolen_card", "expired_card", "incorrect_cvc",
            "processing_error", "fraudulent"} <= reasons
