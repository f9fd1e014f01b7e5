"""Balance transactions (/v1/balance_transactions) and the balance they add up to (/v1/balance).

Every movement of funds has one, as at Stripe:
- a captured card charge: type `charge`, reporting category `charge`, amount the captured amount,
  fee Stripe's standard US card pricing (2.9% + 30¢ per successful charge, +1.5% for a card issued
  outside the US) as one `stripe_fee` line, net = amount - fee; its funds become available two days
  later (the US standard payout schedule), `pending` until then;
- a refund: type `refund`, amount minus the refunded amount, no fee (Stripe keeps the original
  processing fee); a refund that fails later: type `refund_failure`, the amount back;
- dispute withdrawals and reinstatements: `adjustment`s in categories `dispute` / `dispute_reversal`,
  the withdrawal carrying Stripe's $15 dispute fee (made by the dispute code in disputes/disputes.py).
`charge.balance_transaction` and `refund.balance_transaction` name them and expand to them.

Not modelled: currency conversion (+1% and an `exchange_rate` when the charge's currency differs
from the settlement currency): amounts stay in the charge's currency.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from emulator.engine import Engine
from emulator.state import DAY, PUT_HOOKS, Json
from emulator.wire.protocol import check_params, list_object
from emulator.wire.routes import LIST_PARAMS, created_filter, render, route

KIND = "balance_transaction"
PERCENT = Decimal("0.029")
INTERNATIONAL_PERCENT = Decimal("0.015")
FIXED_FEE = 30
AVAILABLE_AFTER_DAYS = 2


def card_fee(amount: int, card_country: str | None) -> int:
    """Stripe's standard US pricing for a successful card charge, in minor units."""
    percent = PERCENT + (INTERNATIONAL_PERCENT if card_country not in (None, "US") else Decimal(0))
    return int((Decimal(amount) * percent).quantize(Decimal(1), rounding=ROUND_HALF_UP)) + FIXED_FEE


def _txn(txn_id: str, *, amount: int, currency: str, created: int, source: str, kind: str, category: str,
         description: str | None, fee: int = 0, available_on: int | None = None,
         customer: str | None = None) -> Json:
    fee_details = [{"amount": fee, "application": None, "currency": currency,
                    "description": "Stripe processing fees", "type": "stripe_fee"}] if fee else []
    return {
        "id": txn_id, "object": KIND, "amount": amount, "available_on": available_on or created,
        "balance_type": "payments", "created": created, "currency": currency, "description": description,
        "exchange_rate": None, "fee": fee, "fee_details": fee_details, "net": amount - fee,
        "reporting_category": category, "source": source,
        "status": "pending" if available_on and available_on > created else "available", "type": kind,
        "_customer": customer,
    }


def _stored(engine: Engine, txn_id: str) -> bool:
    return txn_id in engine.objects.get(KIND, {})


def _on_charge(engine: Engine, charge: Json) -> None:
    txn_id = charge.get("balance_transaction")
    if not txn_id or not charge.get("captured") or _stored(engine, str(txn_id)):
        return
    amount = int(charge.get("amount_captured") or charge["amount"])
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    created = int(charge["created"])
    engine.put(KIND, _txn(str(txn_id), amount=amount, currency=charge["currency"], created=created,
                          source=charge["id"], kind="charge", category="charge",
                          description=charge.get("description"), fee=card_fee(amount, card.get("country")),
                          available_on=(created // DAY + AVAILABLE_AFTER_DAYS) * DAY,
                          customer=charge.get("customer")))


def _on_refund(engine: Engine, refund: Json) -> None:
    txn_id = refund.get("balance_transaction")
    if not txn_id or _stored(engine, str(txn_id)):
        return
    charge = engine.objects.get("charge", {}).get(str(refund.get("charge"))) or {}
    described = charge.get("description")
    engine.put(KIND, _txn(str(txn_id), amount=-int(refund["amount"]), currency=refund["currency"],
                          created=int(refund["created"]), source=refund["id"], kind="refund", category="refund",
                          description=f"REFUND FOR CHARGE ({described})" if described else "REFUND FOR CHARGE",
                          customer=charge.get("customer")))


def sync(engine: Engine) -> None:
    """Transactions made by changes that don't pass through a put (a refund that failed later)."""
    for refund in engine.all("refund"):
        txn_id = refund.get("failure_balance_transaction")
        if refund.get("status") == "failed" and txn_id and not _stored(engine, str(txn_id)):
            engine.put(KIND, _txn(str(txn_id), amount=int(refund["amount"]), currency=refund["currency"],
                                  created=engine.now_for(None), source=refund["id"], kind="refund_failure",
                                  category="refund_failure", description="REFUND FAILURE"))


def _view(engine: Engine, txn: Json) -> Json:
    """The transaction with its status as of now (its funds become available on `available_on`)."""
    now = engine.now_for(txn.get("_customer"))
    txn["status"] = "available" if now >= int(txn["available_on"]) else "pending"
    return txn


PUT_HOOKS.setdefault("charge", []).append(_on_charge)
PUT_HOOKS.setdefault("refund", []).append(_on_refund)


@route("GET", "/v1/balance_transactions/{id}")
def balance_transactions_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"expand"})
    sync(engine)
    return render(engine, _view(engine, engine.get(KIND, m["id"], "balance transaction")), params)


@route("GET", "/v1/balance_transactions")
def balance_transactions_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS | {"currency", "payout", "source", "type", "expand"})
    sync(engine)
    currency, source, kind = params.get("currency"), params.get("source"), params.get("type")
    items = [_view(engine, t) for t in engine.all(KIND)
             if (not currency or t["currency"] == str(currency).lower()) and (not source or t["source"] == source)
             and (not kind or t["type"] == kind)]
    if params.get("payout"):
        items = []  # the emulator makes no payouts
    items = created_filter(items, params.get("created"))
    return render(engine, list_object("/v1/balance_transactions", items, params), params, is_list=True)


def balance(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    """The sum of the balance transactions' net, by currency and availability."""
    check_params(params, {"expand"})
    sync(engine)
    sums: dict[str, dict[str, int]] = {"available": {}, "pending": {}}
    for txn in engine.all(KIND):
        shown = _view(engine, txn)
        bucket = sums[str(shown["status"])]
        bucket[txn["currency"]] = bucket.get(txn["currency"], 0) + int(txn["net"])
    return {"object": "balance", "available": amounts(sums["available"]), "livemode": False,
            "pending": amounts(sums["pending"])}


def amounts(bucket: dict[str, int]) -> list[Json]:
    return [{"amount": a, "currency": c, "source_types": {"card": a}} for c, a in sorted(bucket.items())] or \
        [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}]


route("GET", "/v1/balance")(balance)

__all__ = ["card_fee", "sync"]
