"""The one money module: minor units shown and typed by each currency's exponent, as Stripe documents them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services import money
from services.money import MoneyError, exponent, format_money, format_totals, parse_amount, to_major

STRIPE_ZERO_DECIMAL = [
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
    "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
]
STRIPE_THREE_DECIMAL = ["BHD", "JOD", "KWD", "OMR", "TND"]


# --- two-decimal (the default) -------------------------------------------------------------------
@pytest.mark.parametrize(("amount", "currency", "shown"), [
    (900, "usd", "9.00 USD"),
    (2900, "USD", "29.00 USD"),
    (132, "eur", "1.32 EUR"),
    (5, "gbp", "0.05 GBP"),
    (0, "usd", "0.00 USD"),
    (-60, "usd", "-0.60 USD"),
    (-192_00, "usd", "-192.00 USD"),
    (123_456_789, "usd", "1,234,567.89 USD"),
    (10**20 + 1, "usd", "1,000,000,000,000,000,000.01 USD"),
    (1045, "huf", "10.45 HUF"),  # HUF and TWD are zero-decimal for payouts only; charges are two-decimal
    (1099, "twd", "10.99 TWD"),
])
def test_two_decimal_currencies(amount: int, currency: str, shown: str) -> None:
    assert format_money(amount, currency) == shown


def test_an_unknown_code_is_two_decimal_like_every_currency_stripe_does_not_list_otherwise() -> None:
    assert exponent("xyz") == 2
    assert format_money(900, "xyz") == "9.00 XYZ"


# --- zero-decimal --------------------------------------------------------------------------------
@pytest.mark.parametrize("currency", sorted(set(STRIPE_ZERO_DECIMAL) - {"UGX"}))
def test_every_stripe_zero_decimal_currency_is_shown_unscaled(currency: str) -> None:
    assert exponent(currency.lower()) == 0
    assert format_money(1000, currency.lower()) == f"1,000 {currency}"


@pytest.mark.parametrize(("amount", "shown"), [
    (1000, "1,000 JPY"), (0, "0 JPY"), (1, "1 JPY"), (-500, "-500 JPY"), (9_999_999_999, "9,999,999,999 JPY"),
])
def test_yen(amount: int, shown: str) -> None:
    assert format_money(amount, "jpy") == shown
    assert to_major(amount, "JPY") == Decimal(amount)


# --- Stripe's special cases: ISK and UGX carry two digits that are always 00 ------------------------
@pytest.mark.parametrize(("amount", "currency", "shown"), [
    (500, "isk", "5 ISK"), (150_000, "ugx", "1,500 UGX"), (0, "isk", "0 ISK"), (-500, "ugx", "-5 UGX"),
    (550, "isk", "5.50 ISK"),  # Stripe would never send this; shown in full rather than rounded away
])
def test_isk_and_ugx_are_two_digits_on_the_wire_and_whole_units_on_screen(amount: int, currency: str,
                                                                          shown: str) -> None:
    assert exponent(currency) == 2
    assert format_money(amount, currency) == shown


def test_isk_and_ugx_cannot_be_typed_with_a_fraction() -> None:
    assert parse_amount("5", "isk") == 500
    assert parse_amount("1,500", "UGX") == 150_000
    with pytest.raises(MoneyError, match="ISK has no decimals"):
        parse_amount("5.50", "isk")


# --- three-decimal -------------------------------------------------------------------------------
@pytest.mark.parametrize("currency", STRIPE_THREE_DECIMAL)
def test_every_stripe_three_decimal_currency(currency: str) -> None:
    assert exponent(currency) == 3
    assert format_money(1500, currency.lower()) == f"1.500 {currency}"


@pytest.mark.parametrize(("amount", "shown"), [
    (1500, "1.500 KWD"), (0, "0.000 KWD"), (5, "0.005 KWD"), (-5120, "-5.120 KWD"),
    (1_234_567_890, "1,234,567.890 KWD"),
])
def test_dinar(amount: int, shown: str) -> None:
    assert format_money(amount, "kwd") == shown


def test_to_major_is_exact() -> None:
    assert to_major(900, "usd") == Decimal("9.00")
    assert to_major(-60, "usd") == Decimal("-0.60")
    assert to_major(1500, "kwd") == Decimal("1.500")
    assert str(to_major(10**20 + 1, "usd")) == "1000000000000000000.01"


# --- codes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", ["usd", "USD", "Usd", " usd "])
def test_codes_in_any_case_are_read_the_same(code: str) -> None:
    assert format_money(900, code) == "9.00 USD"
    assert money.currency_code(code) == "USD"


@pytest.mark.parametrize("code", ["", "us", "usdd", "u$d", "12a"])
def test_a_code_that_is_not_three_letters_is_refused(code: str) -> None:
    with pytest.raises(MoneyError, match="not a currency code"):
        format_money(900, code)


def test_totals_across_currencies_merge_case_insensitively_and_sort_by_code() -> None:
    assert format_totals({"usd": 900, "jpy": 1000}) == "1,000 JPY, 9.00 USD"
    assert format_totals([("usd", 900), ("USD", 2000), ("kwd", 1500)]) == "1.500 KWD, 29.00 USD"
    assert format_totals({}) == "none"
    assert format_totals({}, empty="0.00 USD") == "0.00 USD"


# --- what a person types -----------------------------------------------------------------------
@pytest.mark.parametrize(("text", "currency", "minor"), [
    ("29", "usd", 2900), ("29.00", "usd", 2900), ("29.5", "usd", 2950), ("1,234.56", "usd", 123456),
    (" 9.00 USD ", "usd", 900), ("9.00 usd", "USD", 900), (".50", "usd", 50),
    ("1.50", "usd", 150), ("1.500", "usd", 150),  # trailing zeros add no precision
    ("1000", "jpy", 1000), ("1,000", "JPY", 1000), ("1000.00", "jpy", 1000),
    ("1.5", "kwd", 1500), ("1.520", "kwd", 1520), ("12,345.67", "bhd", 12_345_670),
    ("99999999999999999999.99", "usd", 9_999_999_999_999_999_999_999),
])
def test_parse_amount(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


def test_parse_round_trips_what_format_shows() -> None:
    for amount, currency in [(900, "usd"), (1000, "jpy"), (1500, "kwd"), (500, "isk"), (123_456_789, "eur")]:
        assert parse_amount(format_money(amount, currency), currency) == amount


@pytest.mark.parametrize(("text", "currency", "says"), [
    ("1.005", "usd", "USD has 2 decimals"),
    ("0.001", "eur", "EUR has 2 decimals"),
    ("1.5", "jpy", "JPY has no decimals"),
    ("1.0005", "kwd", "KWD has 3 decimals"),
    ("1.505", "kwd", "last \\(third\\) decimal is 0"),
    ("-1", "usd", "must be positive"),
    ("0", "usd", "more than zero"),
    ("0.00", "usd", "more than zero"),
    ("", "usd", "Enter an amount in USD"),
    ("   ", "usd", "Enter an amount in USD"),
    ("abc", "usd", "not an amount"),
    ("1,00", "usd", "not an amount"),
    ("1.2.3", "usd", "not an amount"),
    ("1e3", "usd", "not an amount"),
    ("9.00 EUR", "usd", "not an amount"),
    ("1 000", "usd", "not an amount"),
])
def test_parse_refuses_what_it_cannot_take_exactly(text: str, currency: str, says: str) -> None:
    with pytest.raises(MoneyError, match=says):
        parse_amount(text, currency)


def test_zero_is_accepted_only_when_asked() -> None:
    assert parse_amount("0", "usd", allow_zero=True) == 0


# --- a typed amount filter (the dispute queue's bounds) ---------------------------------------------
def test_dispute_amount_bounds_follow_the_chosen_currency() -> None:
    from services.dispute_queue import amount_bounds

    assert amount_bounds("usd", 10.0, 0.0) == (1000, None)
    assert amount_bounds("JPY", 1000.0, 5000.0) == (1000, 5000)
    assert amount_bounds("kwd", "1.5", None) == (1500, None)
    assert amount_bounds(None, 0.0, 0.0) == (None, None)
    with pytest.raises(MoneyError, match="Choose a currency"):
        amount_bounds("", 10.0, 0.0)
    with pytest.raises(MoneyError, match="JPY has no decimals"):
        amount_bounds("jpy", 10.5, 0.0)
