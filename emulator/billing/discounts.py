"""Coupons, promotion codes and the discounts they make on subscription invoices.

Routes: /v1/coupons create/retrieve/update/delete/list; /v1/promotion_codes create/retrieve/
update/list. Behaviour follows Stripe's API reference:
- A coupon has `percent_off` (0 < p <= 100) or `amount_off` with `currency`; `duration` is `once`
  (the default), `repeating` (with `duration_in_months`) or `forever`; a custom `id` is allowed.
  Only `name`, `metadata` (and currency options) can be updated. Deleting a coupon stops new
  redemptions; discounts already made from it stay. `valid` turns false once `redeem_by` has passed
  or `max_redemptions` is reached.
- A promotion code points at a coupon (`promotion[type]=coupon`, `promotion[coupon]`); `code`
  is generated when not given; it can be deactivated (`active=false`), restricted to a customer,
  expire (`expires_at`) and have `max_redemptions`.
- A subscription's `discounts` param takes `coupon`, `promotion_code` or `discount` entries; each
  coupon or code makes a `discount` object (`source.coupon`, `promotion_code`, `start`, `end`) listed
  on the subscription's `discounts`. Every invoice the subscription makes while a discount lasts
  carries it in `discounts` and `total_discount_amounts`, spreads the amount over its discountable
  lines' `discount_amounts`, and totals `subtotal - discount`. A `once` discount applies to one
  invoice, a `repeating` one until `end`, a `forever` one always; `discounts=""` removes them.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from emulator import state
from emulator.billing import calendar as billing_calendar
from emulator.engine import Engine
from emulator.state import Json, new_id
from emulator.wire.protocol import StripeApiError, check_params, list_object, one_of, to_bool, to_int
from emulator.wire.routes import LIST_PARAMS, created_filter, render, retrieve, route

COUPON, PROMO, DISCOUNT = "coupon", "promotion_code", "discount"
DURATIONS = ("once", "repeating", "forever")


# --- coupons --------------------------------------------------------------------------------------
def _coupon_valid(engine: Engine, coupon: Json, now: int) -> bool:
    if coupon.get("deleted"):
        return False
    if coupon.get("redeem_by") and now > int(coupon["redeem_by"]):
        return False
    return not (coupon.get("max_redemptions") and int(coupon["times_redeemed"]) >= int(coupon["max_redemptions"]))


def _coupon_view(engine: Engine, coupon: Json) -> Json:
    coupon["valid"] = _coupon_valid(engine, coupon, engine.now_for(None))
    return coupon


@route("POST", "/v1/coupons")
def coupons_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"id", "percent_off", "amount_off", "currency", "duration", "duration_in_months", "name",
                          "metadata", "max_redemptions", "redeem_by", "applies_to", "currency_options"})
    percent = params.get("percent_off")
    amount = params.get("amount_off")
    if (percent in (None, "")) == (amount in (None, "")):
        raise StripeApiError(400, "You must pass exactly one of percent_off or amount_off.", param="percent_off")
    percent_off = float(percent) if percent not in (None, "") else None
    if percent_off is not None and not 0 < percent_off <= 100:
        raise StripeApiError(400, "Invalid percent_off: must be greater than 0 and at most 100.",
                             code="parameter_invalid_integer", param="percent_off")
    amount_off = to_int(amount, "amount_off", minimum=1) if amount not in (None, "") else None
    if amount_off is not None and not params.get("currency"):
        raise StripeApiError(400, "You must pass currency when passing amount_off.", code="parameter_missing",
                             param="currency")
    duration = str(params.get("duration") or "once")
    one_of(duration, DURATIONS, "duration")
    months = None
    if duration == "repeating":
        if params.get("duration_in_months") in (None, ""):
            raise StripeApiError(400, "Missing required param: duration_in_months.", code="parameter_missing",
                                 param="duration_in_months")
        months = to_int(params["duration_in_months"], "duration_in_months", minimum=1)
    coupon_id = str(params.get("id") or secrets.token_urlsafe(6).replace("-", "A").replace("_", "B")[:8])
    if coupon_id in engine.objects.get(COUPON, {}) and not engine.objects[COUPON][coupon_id].get("deleted"):
        raise StripeApiError(400, "Coupon already exists.", code="resource_already_exists", param="id")
    coupon: Json = {
        "id": coupon_id, "object": COUPON, "amount_off": amount_off, "applies_to": None,
        "created": engine.now_for(None), "currency": str(params["currency"]).lower() if amount_off else None,
        "duration": duration, "duration_in_months": months, "livemode": False,
        "max_redemptions": to_int(params["max_redemptions"], "max_redemptions", minimum=1)
        if params.get("max_redemptions") else None,
        "metadata": dict(params.get("metadata") or {}), "name": params.get("name"), "percent_off": percent_off,
        "redeem_by": to_int(params["redeem_by"], "redeem_by") if params.get("redeem_by") else None,
        "times_redeemed": 0, "valid": True,
    }
    engine.put(COUPON, coupon)
    engine.emit("coupon.created", coupon, created=coupon["created"])
    return render(engine, _coupon_view(engine, coupon), params)


@route("GET", "/v1/coupons/{id}")
def coupons_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, _coupon_view(engine, engine.get(COUPON, m["id"], COUPON)), params)


@route("POST", "/v1/coupons/{id}")
def coupons_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"name", "metadata", "currency_options"})
    coupon = engine.get(COUPON, m["id"], COUPON)
    before = engine.snapshot(coupon)
    if "name" in params:
        coupon["name"] = params["name"] or None
    if "metadata" in params:
        engine._merge_metadata(coupon, params["metadata"])
    engine.emit_update("coupon.updated", coupon, before, created=engine.now_for(None))
    return render(engine, _coupon_view(engine, coupon), params)


@route("DELETE", "/v1/coupons/{id}")
def coupons_delete(engine: Engine, m: dict[str, str], params: Json) -> Json:
    coupon = engine.get(COUPON, m["id"], COUPON)
    coupon["deleted"] = True
    engine.emit("coupon.deleted", dict(coupon, valid=False), created=engine.now_for(None))
    return {"id": coupon["id"], "object": COUPON, "deleted": True}


@route("GET", "/v1/coupons")
def coupons_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS)
    coupons = [_coupon_view(engine, c) for c in engine.all(COUPON)]
    return render(engine, list_object("/v1/coupons", created_filter(coupons, params.get("created")), params),
                  params, is_list=True)


# --- promotion codes ------------------------------------------------------------------------------
def _restrictions(raw: Any) -> Json:
    raw = raw if isinstance(raw, dict) else {}
    return {
        "currency_options": raw.get("currency_options") or {},
        "first_time_transaction": to_bool(raw.get("first_time_transaction", False), "restrictions"),
        "minimum_amount": to_int(raw["minimum_amount"], "restrictions[minimum_amount]")
        if raw.get("minimum_amount") not in (None, "") else None,
        "minimum_amount_currency": raw.get("minimum_amount_currency"),
    }


def _promo_active(engine: Engine, promo: Json, now: int) -> bool:
    if not promo["active"]:
        return False
    if promo.get("expires_at") and now > int(promo["expires_at"]):
        return False
    return not (promo.get("max_redemptions") and int(promo["times_redeemed"]) >= int(promo["max_redemptions"]))


@route("POST", "/v1/promotion_codes")
def promotion_codes_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"promotion", "code", "active", "customer", "expires_at", "max_redemptions",
                          "metadata", "restrictions", "customer_account"}, ("promotion",))
    promotion = params["promotion"] if isinstance(params["promotion"], dict) else {}
    if promotion.get("type") != "coupon" or not promotion.get("coupon"):
        raise StripeApiError(400, "Missing required param: promotion[coupon].", code="parameter_missing",
                             param="promotion[coupon]")
    coupon = engine.get(COUPON, str(promotion["coupon"]), COUPON, "promotion[coupon]")
    code = str(params.get("code") or "".join(secrets.choice(string.ascii_uppercase + string.digits)
                                             for _ in range(8)))
    if any(p["code"].lower() == code.lower() and p["active"] for p in engine.all(PROMO)):
        raise StripeApiError(400, f"An active promotion code with `code: {code}` already exists.", param="code")
    if params.get("customer"):
        engine.get("customer", str(params["customer"]), "customer", "customer")
    now = engine.now_for(None)
    promo: Json = {
        "id": new_id("promo"), "object": PROMO,
        "active": to_bool(params["active"], "active") if "active" in params else True, "code": code,
        "created": now, "customer": params.get("customer") or None, "customer_account": None,
        "expires_at": to_int(params["expires_at"], "expires_at") if params.get("expires_at") else None,
        "livemode": False,
        "max_redemptions": to_int(params["max_redemptions"], "max_redemptions", minimum=1)
        if params.get("max_redemptions") else None,
        "metadata": dict(params.get("metadata") or {}), "promotion": {"coupon": coupon["id"], "type": "coupon"},
        "restrictions": _restrictions(params.get("restrictions")), "times_redeemed": 0,
    }
    engine.put(PROMO, promo)
    engine.emit("promotion_code.created", promo, created=now)
    return render(engine, promo, params)


retrieve("/v1/promotion_codes/{id}", PROMO)


@route("POST", "/v1/promotion_codes/{id}")
def promotion_codes_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"active", "metadata", "restrictions"})
    promo = engine.get(PROMO, m["id"], PROMO)
    before = engine.snapshot(promo)
    if "active" in params:
        promo["active"] = to_bool(params["active"], "active")
    if "metadata" in params:
        engine._merge_metadata(promo, params["metadata"])
    if isinstance(params.get("restrictions"), dict) and "currency_options" in params["restrictions"]:
        promo["restrictions"]["currency_options"] = params["restrictions"]["currency_options"] or {}
    engine.emit_update("promotion_code.updated", promo, before, created=engine.now_for(None))
    return render(engine, promo, params)


@route("GET", "/v1/promotion_codes")
def promotion_codes_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS | {"active", "code", "coupon", "customer", "customer_account"})
    active = to_bool(params["active"], "active") if "active" in params else None
    code, coupon, customer = params.get("code"), params.get("coupon"), params.get("customer")
    promos = [p for p in engine.all(PROMO)
              if (active is None or p["active"] == active) and (not code or p["code"].lower() == str(code).lower())
              and (not coupon or p["promotion"]["coupon"] == coupon) and (not customer or p["customer"] == customer)]
    return render(engine, list_object("/v1/promotion_codes", created_filter(promos, params.get("created")), params),
                  params, is_list=True)


# --- discounts on subscriptions and their invoices ------------------------------------------------
def _redeem(engine: Engine, subscription: Json, entry: Any, index: int, now: int, *,
            invoice: str | None = None) -> Json:
    param = f"discounts[{index}]"
    if not isinstance(entry, dict):
        raise StripeApiError(400, f"Invalid {param}", param=param)
    if entry.get("discount"):
        return engine.get(DISCOUNT, str(entry["discount"]), DISCOUNT, f"{param}[discount]")
    promo = None
    if entry.get("promotion_code"):
        promo = engine.get(PROMO, str(entry["promotion_code"]), PROMO, f"{param}[promotion_code]")
        if not _promo_active(engine, promo, now):
            raise StripeApiError(400, f"This promotion code cannot be redeemed: {promo['code']}.",
                                 code="promotion_code_invalid" if promo["active"] else "coupon_expired",
                                 param=f"{param}[promotion_code]")
        if promo["customer"] and promo["customer"] != subscription["customer"]:
            raise StripeApiError(400, "This promotion code cannot be redeemed by this customer.",
                                 param=f"{param}[promotion_code]")
        coupon_id = str(promo["promotion"]["coupon"])
    elif entry.get("coupon"):
        coupon_id = str(entry["coupon"])
    else:
        raise StripeApiError(400, f"Missing required param: {param}[coupon].", code="parameter_missing",
                             param=f"{param}[coupon]")
    coupon = engine.get(COUPON, coupon_id, COUPON, f"{param}[coupon]")
    if not _coupon_valid(engine, coupon, now):
        raise StripeApiError(400, f"Coupon expired: {coupon['id']}", code="coupon_expired", param=f"{param}[coupon]")
    if coupon["amount_off"] and coupon["currency"] != subscription["currency"]:
        raise StripeApiError(400, f"The coupon {coupon['id']} is in {coupon['currency']} but the subscription is in "
                                  f"{subscription['currency']}.", param=f"{param}[coupon]")
    coupon["times_redeemed"] += 1
    if promo is not None:
        promo["times_redeemed"] += 1
    end = None
    if coupon["duration"] == "repeating":
        end = billing_calendar.boundary(now, "month", int(coupon["duration_in_months"]), 1)
    discount: Json = {
        "id": new_id("di"), "object": DISCOUNT, "checkout_session": None, "customer": subscription["customer"],
        "customer_account": None, "end": end, "invoice": invoice, "invoice_item": None,
        "promotion_code": promo["id"] if promo else None, "source": {"coupon": coupon["id"], "type": "coupon"},
        "start": now, "subscription": None if invoice else subscription["id"], "subscription_item": None,
        "_coupon": dict(coupon),
    }
    return engine.put(DISCOUNT, discount)


def _apply_params(engine: Engine, subscription: Json, params: Json, now: int) -> None:
    subscription.setdefault("discounts", [])
    if "discounts" not in params:
        return
    raw = params["discounts"]
    entries = raw if isinstance(raw, list) else []
    subscription["discounts"] = [_redeem(engine, subscription, entry, index, now)["id"]
                                 for index, entry in enumerate(entries)]


def set_invoice_discounts(engine: Engine, invoice: Json, raw: Any) -> None:
    """A draft invoice's `discounts` param: its own discounts (coupon, promotion_code or discount)."""
    now = engine.now_for(invoice["customer"])
    entries = raw if isinstance(raw, list) else []
    owner = {"id": invoice["id"], "customer": invoice["customer"], "currency": invoice["currency"]}
    invoice["_discounts"] = [_redeem(engine, owner, entry, index, now, invoice=invoice["id"])["id"]
                             for index, entry in enumerate(entries)]
    apply_discounts(engine, invoice, invoice["_discounts"], now)


def reapply_invoice_discounts(engine: Engine, invoice: Json) -> None:
    """Recompute a draft's discount amounts and totals after its lines changed."""
    discount_ids = list(invoice.get("_discounts") or invoice.get("discounts") or [])
    apply_discounts(engine, invoice, discount_ids, engine.now_for(invoice["customer"]))


def _amount(coupon: Json, base: int) -> int:
    if coupon.get("percent_off") is not None:
        return round(base * float(coupon["percent_off"]) / 100)
    return min(int(coupon["amount_off"] or 0), base)


def apply_discounts(engine: Engine, invoice: Json, discount_ids: list[str], now: int) -> None:
    """Fill the invoice's discounts, total_discount_amounts, lines' discount_amounts and totals."""
    lines = invoice["lines"]["data"]
    subtotal = sum(int(line["amount"]) for line in lines)
    discountable = [line for line in lines if line.get("discountable", True) and int(line["amount"]) > 0]
    remaining = sum(int(line["amount"]) for line in discountable)
    totals: list[Json] = []
    for line in lines:
        line["discount_amounts"] = []
        line.setdefault("discounts", [])
    for discount_id in discount_ids:
        discount = engine.objects.get(DISCOUNT, {}).get(discount_id)
        if discount is None or remaining <= 0:
            continue
        amount = _amount(discount["_coupon"], remaining)
        left = amount
        for position, line in enumerate(discountable):
            share = left if position == len(discountable) - 1 else \
                round(amount * int(line["amount"]) / max(1, remaining))
            share = min(share, left)
            line["discount_amounts"].append({"amount": share, "discount": discount_id})
            left -= share
        totals.append({"amount": amount, "discount": discount_id})
        remaining -= amount
    discount_total = sum(int(t["amount"]) for t in totals)
    total = subtotal - discount_total
    invoice.update({
        "discounts": [t["discount"] for t in totals], "total_discount_amounts": totals, "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal, "total": total, "total_excluding_tax": total,
        "amount_due": max(total, 0), "amount_remaining": max(total, 0) - int(invoice.get("amount_paid") or 0),
    })


def _adjust_invoice(engine: Engine, invoice: Json, subscription: Json, now: int) -> None:
    active: list[str] = []
    for discount_id in subscription.get("discounts") or []:
        discount = engine.objects.get(DISCOUNT, {}).get(discount_id)
        if discount is None or (discount["end"] is not None and now >= int(discount["end"])):
            continue
        active.append(discount_id)
    apply_discounts(engine, invoice, active, now)
    # A `once` discount is used up by the first invoice it applies to.
    for discount_id in invoice["discounts"]:
        discount = engine.objects[DISCOUNT][discount_id]
        if discount["_coupon"]["duration"] == "once":
            discount["end"] = now
            subscription["discounts"] = [d for d in subscription["discounts"] if d != discount_id]


state.SUBSCRIPTION_PARAMS.append(_apply_params)
state.INVOICE_ADJUST.append(_adjust_invoice)
state.INVOICE_LINES_CHANGED.append(reapply_invoice_discounts)

__all__ = ["apply_discounts", "reapply_invoice_discounts", "set_invoice_discounts"]
