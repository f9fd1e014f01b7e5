"""Stripe's documented test cards: every card by number and by its `pm_card_*` PaymentMethod.

The table is Stripe's testing page (cards that succeed by brand; declines by reason;
3-D Secure and authentication; Radar risk and checks; disputes and early fraud warnings;
asynchronous refunds). Each card names its behaviour, which the engine acts out:

    ok                 the payment succeeds
    declined           attaching it to a customer and charging it are declined (with `decline`)
    fail_later         attaches; every charge is declined (4000000000000341)
    sca                every payment needs 3-D Secure
    sca_on_setup       the first payment needs 3-D Secure; once authenticated, later
                       (off-session) payments on the saved card don't (4000002500003155)
    sca_then_decline   3-D Secure, then declined (with `decline`)
    blocked            Radar blocks the payment (outcome type `blocked`)
    dispute            succeeds, then disputed (`dispute_reason`); `disputes` of them
    inquiry            succeeds, then an inquiry
    ce3                succeeds, then a Visa 10.4 dispute eligible for Compelling Evidence 3.0
    efw                succeeds, then an early fraud warning
    pending_refund     refunds start `pending` and later succeed (refund.updated)
    refund_fail        refunds start `succeeded` and later fail (refund.failed)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decline:
    code: str
    decline_code: str
    message: str


GENERIC = Decline("card_declined", "generic_decline", "Your card was declined.")
INSUFFICIENT_FUNDS = Decline("card_declined", "insufficient_funds", "Your card has insufficient funds.")
LOST_CARD = Decline("card_declined", "lost_card", "Your card was declined.")
STOLEN_CARD = Decline("card_declined", "stolen_card", "Your card was declined.")
EXPIRED_CARD = Decline("expired_card", "expired_card", "Your card has expired.")
INCORRECT_CVC = Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.")
PROCESSING_ERROR = Decline("processing_error", "processing_error",
                           "An error occurred while processing your card. Try again in a little bit.")
VELOCITY = Decline("card_declined", "card_velocity_exceeded", "Your card was declined.")
FRAUDULENT = Decline("card_declined", "fraudulent", "Your card was declined.")


@dataclass(frozen=True)
class TestCard:
    number: str
    behaviour: str = "ok"
    funding: str = "credit"
    decline: Decline | None = None
    dispute_reason: str = "fraudulent"
    disputes: int = 1
    risk_level: str = "normal"
    cvc_check: str = "pass"
    postal_check: str | None = None
    country: str = "US"

    __test__ = False  # not a pytest class

    @property
    def brand(self) -> str:
        return brand_of(self.number)


_ALWAYS_AUTH = TestCard("4000002760003184", "sca")
CARDS: dict[str, TestCard] = {
    # Cards by brand: the payment succeeds.
    "pm_card_visa": TestCard("4242424242424242"),
    "pm_card_visa_debit": TestCard("4000056655665556", funding="debit"),
    "pm_card_mastercard": TestCard("5555555555554444"),
    "pm_card_mastercard_debit": TestCard("5200828282828210", funding="debit"),
    "pm_card_mastercard_prepaid": TestCard("5105105105105100", funding="prepaid"),
    "pm_card_amex": TestCard("378282246310005"),
    "pm_card_discover": TestCard("6011111111111117"),
    "pm_card_diners": TestCard("3056930009020004"),
    "pm_card_jcb": TestCard("3566002020360505"),
    "pm_card_unionpay": TestCard("6200000000000005"),
    # Declined payments, by reason.
    "pm_card_chargeDeclined": TestCard("4000000000000002", "declined", decline=GENERIC),
    "pm_card_visa_chargeDeclined": TestCard("4000000000000002", "declined", decline=GENERIC),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard("4000000000009995", "declined", decline=INSUFFICIENT_FUNDS),
    "pm_card_visa_chargeDeclinedInsufficientFunds": TestCard("4000000000009995", "declined",
                                                             decline=INSUFFICIENT_FUNDS),
    "pm_card_chargeDeclinedLostCard": TestCard("4000000000009987", "declined", decline=LOST_CARD),
    "pm_card_visa_chargeDeclinedLostCard": TestCard("4000000000009987", "declined", decline=LOST_CARD),
    "pm_card_chargeDeclinedStolenCard": TestCard("4000000000009979", "declined", decline=STOLEN_CARD),
    "pm_card_visa_chargeDeclinedStolenCard": TestCard("4000000000009979", "declined", decline=STOLEN_CARD),
    "pm_card_chargeDeclinedExpiredCard": TestCard("4000000000000069", "declined", decline=EXPIRED_CARD),
    "pm_card_chargeDeclinedIncorrectCvc": TestCard("4000000000000127", "declined", decline=INCORRECT_CVC),
    "pm_card_chargeDeclinedProcessingError": TestCard("4000000000000119", "declined", decline=PROCESSING_ERROR),
    "pm_card_visa_chargeDeclinedVelocityLimitExceeded": TestCard("4000000000006975", "declined", decline=VELOCITY),
    "pm_card_chargeCustomerFail": TestCard("4000000000000341", "fail_later", decline=GENERIC),
    # Authentication and 3-D Secure.
    "pm_card_authenticationRequired": _ALWAYS_AUTH,
    "pm_card_authenticationRequiredOnSetup": TestCard("4000002500003155", "sca_on_setup"),
    "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds": TestCard(
        "4000008260003178", "sca_then_decline", decline=INSUFFICIENT_FUNDS),
    "pm_card_threeDSecure2Required": TestCard("4000000000003220", "sca"),
    "pm_card_threeDSecureRequired": TestCard("4000000000003063", "sca"),
    "pm_card_threeDSecureRequiredChargeDeclined": TestCard("4000008400001629", "sca_then_decline", decline=GENERIC),
    "pm_card_threeDSecureOptional": TestCard("4000000000003055"),
    # Fraud prevention (Radar) and checks.
    "pm_card_radarBlock": TestCard("4100000000000019", "blocked", decline=FRAUDULENT, risk_level="highest"),
    "pm_card_riskLevelHighest": TestCard("4000000000004954", "blocked", decline=FRAUDULENT, risk_level="highest"),
    "pm_card_riskLevelElevated": TestCard("4000000000009235", risk_level="elevated"),
    "pm_card_cvcCheckFail": TestCard("4000000000000101", cvc_check="fail"),
    "pm_card_avsZipFail": TestCard("4000000000000036", postal_check="fail"),
    # Disputes and early fraud warnings: the charge succeeds, then this happens.
    "pm_card_createDispute": TestCard("4000000000000259", "dispute"),
    "pm_card_createDisputeProductNotReceived": TestCard("4000000000002685", "dispute",
                                                        dispute_reason="product_not_received"),
    "pm_card_createDisputeInquiry": TestCard("4000000000001976", "inquiry"),
    # docs.stripe.com/disputes/api/visa-ce3#testing: a Visa CE 3.0 eligible dispute (network reason code 10.4).
    "pm_card_createCe3EligibleDispute": TestCard("4000000404000038", "ce3"),
    "pm_card_createMultipleDisputes": TestCard("4000000404000079", "dispute", disputes=2),
    "pm_card_createIssuerFraudRecord": TestCard("4000000000005423", "efw", risk_level="elevated"),
    # Asynchronous refunds.
    "pm_card_pendingRefund": TestCard("4000000000007726", "pending_refund"),
    "pm_card_refundFail": TestCard("4000000000005126", "refund_fail"),
}

# A number names the first token listed for it.
BY_NUMBER: dict[str, str] = {}
for _token, _card in CARDS.items():
    BY_NUMBER.setdefault(_card.number, _token)


def lookup(token_or_number: str) -> tuple[str, TestCard] | None:
    """(token, card) for a `pm_card_*` token or a test card number (spaces allowed)."""
    key = token_or_number.replace(" ", "")
    token = BY_NUMBER.get(key, key)
    card = CARDS.get(token)
    return (token, card) if card is not None else None


def is_test_card(value: str | None) -> bool:
    return bool(value) and lookup(str(value)) is not None


def brand_of(number: str) -> str:
    if number.startswith(("34", "37")):
        return "amex"
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number.startswith(("6011", "65")):
        return "discover"
    if number.startswith(("300", "301", "302", "303", "304", "305", "36", "38")):
        return "diners"
    if number.startswith("35"):
        return "jcb"
    if number.startswith("62"):
        return "unionpay"
    return "unknown"
