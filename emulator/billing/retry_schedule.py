"""Payment retries for failed subscription invoices (Dashboard: Billing > Revenue recovery > Retries).

What Stripe documents (docs.stripe.com/billing/revenue-recovery/smart-retries):
- Smart Retries retry a failed payment a set number of times within a window of 1 week,
  2 weeks, 3 weeks, 1 month or 2 months; the recommended default is 8 tries within 2 weeks.
  Stripe picks each retry's moment with a model it doesn't publish, so the emulator spreads
  the tries evenly over the window (each one window/count after the previous attempt) to keep
  test clocks predictable.
- A custom retry schedule is up to three retries, each a number of days after the previous attempt.
- When all retries fail, the subscription is canceled, marked `unpaid` or left `past_due`, and
  the invoice is left past-due (open) or marked uncollectible (since 2026-09-30.endive with
  `status_details.uncollectible.reason = max_payment_attempts`). The emulator's default is to
  cancel the subscription (`cancellation_details.reason = payment_failed`) and leave the invoice open.

- Stripe doesn't retry when no payment method is available: a due retry finds none (a detached
  card is no longer the customer's) and creates no charge; the next one charges a new card.
- After a non-retryable decline code (incorrect_number, lost_card, pickup_card, stolen_card,
  revocation_of_authorization, revocation_of_all_authorizations, authentication_required,
  highest_risk_level) retries stay scheduled and attempt_count increments but no charge is made until
  a new payment method. Not modelled: the emulator's lost and stolen test cards are declined on
  attach and its 3-D Secure cards ask for authentication, so no renewal here ends in one of them.
- An unpaid subscription's renewal invoices stay drafts with auto_advance off and are not attempted
  (billing/clock.py); its open invoice has no further attempt, and only paying the most recent
  invoice makes it active again.

`/_emulator/billing/config` sets it, e.g. `{"retries": {"mode": "custom", "days": [3, 5, 7]},
"after_retries": {"subscription": "unpaid", "invoice": "uncollectible"}}`.
"""

from __future__ import annotations

from typing import Any

from emulator.billing.calendar import DAY
from emulator.wire.protocol import StripeApiError

SMART_WINDOWS_DAYS = (7, 14, 21, 30, 60)  # 1, 2, 3 weeks, 1 month, 2 months
DEFAULT_RETRIES: dict[str, Any] = {"mode": "smart", "count": 8, "window_days": 14}
CUSTOM_MAX_RETRIES = 3
SUBSCRIPTION_ENDS = ("cancel", "unpaid", "past_due")
INVOICE_ENDS = ("past_due", "uncollectible")
DEFAULT_AFTER_RETRIES: dict[str, str] = {"subscription": "cancel", "invoice": "past_due"}


def default_config() -> dict[str, Any]:
    return {"retries": dict(DEFAULT_RETRIES), "after_retries": dict(DEFAULT_AFTER_RETRIES)}


def _invalid(param: str, message: str) -> StripeApiError:
    return StripeApiError(400, message, code="parameter_invalid", param=param)


def _positive_int(value: Any, param: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _invalid(param, f"Invalid {param}: expected a positive integer.") from None
    if number < 1 or str(number) != str(value).strip():
        raise _invalid(param, f"Invalid {param}: expected a positive integer.")
    return number


def parse_retries(payload: Any) -> dict[str, Any]:
    """The `retries` setting from the test helper's JSON, checked against what the Dashboard offers."""
    if not isinstance(payload, dict):
        raise _invalid("retries", "retries must be an object with a mode of smart or custom.")
    mode = payload.get("mode")
    if mode == "smart":
        window = _positive_int(payload.get("window_days", DEFAULT_RETRIES["window_days"]), "retries[window_days]")
        if window not in SMART_WINDOWS_DAYS:
            raise _invalid("retries[window_days]", f"Smart Retries run within {SMART_WINDOWS_DAYS} days.")
        count = _positive_int(payload.get("count", DEFAULT_RETRIES["count"]), "retries[count]")
        return {"mode": "smart", "count": count, "window_days": window}
    if mode == "custom":
        days = payload.get("days")
        if not isinstance(days, list) or not days or len(days) > CUSTOM_MAX_RETRIES:
            raise _invalid("retries[days]", f"A custom retry schedule has 1 to {CUSTOM_MAX_RETRIES} retries.")
        return {"mode": "custom", "days": [_positive_int(d, f"retries[days][{i}]") for i, d in enumerate(days)]}
    raise _invalid("retries[mode]", "retries[mode] must be smart or custom.")


def parse_after_retries(payload: Any, current: dict[str, str]) -> dict[str, str]:
    if not isinstance(payload, dict):
        raise _invalid("after_retries", "after_retries must be an object.")
    merged = {**current, **{k: v for k, v in payload.items() if k in ("subscription", "invoice")}}
    if unknown := set(payload) - {"subscription", "invoice"}:
        raise _invalid(f"after_retries[{sorted(unknown)[0]}]", "after_retries takes subscription and invoice.")
    if merged["subscription"] not in SUBSCRIPTION_ENDS:
        raise _invalid("after_retries[subscription]", f"after_retries[subscription] is one of {SUBSCRIPTION_ENDS}.")
    if merged["invoice"] not in INVOICE_ENDS:
        raise _invalid("after_retries[invoice]", f"after_retries[invoice] is one of {INVOICE_ENDS}.")
    return merged


def next_attempt(config: dict[str, Any], failures: int, now: int) -> int | None:
    """When to retry after the `failures`-th failed attempt (None once the schedule is used up)."""
    retries = config.get("retries") or DEFAULT_RETRIES
    if retries["mode"] == "custom":
        days: list[int] = retries["days"]
        return now + days[failures - 1] * DAY if failures <= len(days) else None
    count = int(retries["count"])
    return now + int(retries["window_days"]) * DAY // count if failures <= count else None


def after_retries(config: dict[str, Any]) -> dict[str, str]:
    return dict(config.get("after_retries") or DEFAULT_AFTER_RETRIES)
