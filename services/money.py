"""Money as people read and type it: one module, used by every page, CLI line and record.

Amounts are stored and sent to Stripe as integers in the currency's minor unit
("All API requests expect amount values in the currency's minor unit", Stripe's
"Supported currencies" page). How many digits that minor unit has follows
Stripe's documentation, not ISO 4217:

- zero-decimal: BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF
  ("to charge 500 JPY, provide an amount value of 500");
- three-decimal: BHD JOD KWD OMR TND (5.120 KWD is 5120; Stripe asks that the
  last digit of a charge amount be 0, so typed amounts must end in 0);
- everything else is two-decimal.

Stripe's "Special cases" table overrides the list for two currencies: ISK and UGX
"transitioned to a zero-decimal currency, but backwards compatibility requires you
to represent it as a two-decimal value, where the decimal amount is always 00. For
example, to charge 5 ISK, provide an amount value of 500." So on the wire they carry
two digits (500 is 5 ISK), are shown in whole units ("5 ISK") and a typed amount
may not have a fraction. HUF and TWD are zero-decimal only for payouts; charges are
two-decimal, so they are plain two-decimal here.

Shown as the amount, a space and the upper-case ISO code, with comma thousands
separators and a leading minus for negatives: "9.00 USD", "1,000 JPY", "1.500 KWD",
"-0.60 USD".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Final

from services.errors import ConsoleError

# Stripe's zero-decimal list minus UGX, whose special case (below) governs how charges carry it.
ZERO_DECIMAL: Final = frozenset([
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW",
    "MGA", "PYG", "RWF", "VND", "VUV", "XAF", "XOF", "XPF",
])
THREE_DECIMAL: Final = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
# Two digits on the wire, but only whole units exist (the decimal amount is always 00).
WHOLE_UNITS_ON_TWO_DECIMALS: Final = frozenset({"ISK", "UGX"})

_CODE = re.compile(r"[A-Z]{3}")
# What a person may type: digits, optionally grouped by commas in threes, an optional fraction.
_TYPED = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d*))?|\.(\d+)")


class MoneyError(ConsoleError, ValueError):
    """A currency code or a typed amount that cannot be read."""


def currency_code(currency: str) -> str:
    """The upper-case ISO code ("usd", " Usd " -> "USD"); anything but three letters is refused."""
    code = (currency or "").strip().upper()
    if not _CODE.fullmatch(code):
        raise MoneyError(f"'{currency}' is not a currency code (three letters, such as USD).")
    return code


def exponent(currency: str) -> int:
    """How many digits of the API's integer amount are below the major unit (Stripe's minor unit)."""
    code = currency_code(currency)
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def typed_decimals(currency: str) -> int:
    """How many decimals a person may type for this currency (ISK and UGX: none)."""
    code = currency_code(currency)
    return 0 if code in WHOLE_UNITS_ON_TWO_DECIMALS else exponent(code)


def to_major(amount: int, currency: str) -> Decimal:
    """The exact major-unit value of a minor-unit amount: 900 USD cents -> Decimal('9.00')."""
    places = exponent(currency)
    return Decimal(int(amount)).scaleb(-places) if places else Decimal(int(amount))


def format_money(amount: int, currency: str) -> str:
    """What a person reads: "9.00 USD", "1,000 JPY", "1.500 KWD", "-0.60 USD", "5 ISK"."""
    code = currency_code(currency)
    value = int(amount)
    places = exponent(code)
    if code in WHOLE_UNITS_ON_TWO_DECIMALS and value % 100 == 0:
        places = 0
        value //= 100
    sign = "-" if value < 0 else ""
    major, minor = divmod(abs(value), 10 ** places)
    text = f"{major:,}" + (f".{minor:0{places}d}" if places else "")
    return f"{sign}{text} {code}"


def format_totals(totals: Mapping[str, int] | Iterable[tuple[str, int]], *, empty: str = "none") -> str:
    """Several currencies' totals on one line, in code order: "9.00 USD, 1,000 JPY"."""
    pairs = totals.items() if isinstance(totals, Mapping) else totals
    merged: dict[str, int] = {}
    for currency, amount in pairs:
        code = currency_code(currency)
        merged[code] = merged.get(code, 0) + int(amount)
    return ", ".join(format_money(merged[code], code) for code in sorted(merged)) or empty


def parse_amount(text: str, currency: str, *, allow_zero: bool = False) -> int:
    """The minor-unit integer for an amount a person typed in the major unit ("29.00" USD -> 2900).

    Accepts digits with optional comma thousands groups and an optional trailing
    currency code that must match. Refuses a negative or (unless allowed) zero
    amount and more decimals than the currency has, rather than rounding.
    """
    code = currency_code(currency)
    cleaned = (text or "").strip()
    if cleaned.upper().endswith(code):
        cleaned = cleaned[: -len(code)].strip()
    if not cleaned:
        raise MoneyError(f"Enter an amount in {code}.")
    if cleaned.startswith("-"):
        raise MoneyError(f"The amount must be positive; '{text.strip()}' is negative.")
    match = _TYPED.fullmatch(cleaned)
    if match is None:
        example = "1234" + ("." + "50"[: typed_decimals(code)].ljust(typed_decimals(code), "0")
                            if typed_decimals(code) else "")
        raise MoneyError(f"'{text.strip()}' is not an amount; type digits such as {example}.")
    fraction = (match.group(1) or match.group(2) or "").rstrip("0")
    allowed = typed_decimals(code)
    if len(fraction) > allowed:
        if allowed == 0:
            raise MoneyError(f"{code} has no decimals; '{text.strip()}' has {len(fraction)}.")
        raise MoneyError(f"{code} has {allowed} decimals; '{text.strip()}' has more.")
    try:
        value = Decimal(cleaned.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern above admits only decimal text
        raise MoneyError(f"'{text.strip()}' is not an amount.") from None
    minor = int(value.scaleb(exponent(code)))
    if code in THREE_DECIMAL and minor % 10:
        raise MoneyError(f"Stripe takes {code} amounts whose last (third) decimal is 0; "
                         f"'{text.strip()}' is not one (round it to {format_money(minor - minor % 10, code)}).")
    if minor == 0 and not allow_zero:
        raise MoneyError("The amount must be more than zero.")
    return minor
