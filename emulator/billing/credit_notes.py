"""Credit notes: /v1/credit_notes create, preview, retrieve, list, void.

Behaviour follows Stripe's API reference and its credit-notes guide:
- A credit note is issued on a finalized invoice (`open` or `paid`), for `amount` or for `lines`
  (`invoice_line_item` lines by amount or quantity, `custom_line_item` lines by unit_amount x quantity).
- On an `open` invoice it is a `pre_payment` credit note: it reduces the invoice's `amount_due`
  and `amount_remaining` and adds to `pre_payment_credit_notes_amount`; an invoice credited down to
  nothing due is marked paid. It can't exceed what remains due.
- On a `paid` invoice it is a `post_payment` credit note: its total must be split over
  `refund_amount` (a refund on the invoice's payment), `credit_amount` (the customer's credit
  balance) and `out_of_band_amount`, and it can't exceed what was paid less earlier credit notes;
  it adds to `post_payment_credit_notes_amount`.
- `reason` is one of duplicate, fraudulent, order_change, product_unsatisfactory; `number` is the
  invoice's number with `-CN-NN`. Events: `credit_note.created`, `credit_note.voided`.
- void: an `issued` credit note becomes `void` (`voided_at`); a pre-payment credit goes back onto
  what the invoice has due. (A refund already made is not undone.)
- preview (GET /v1/credit_notes/preview) answers the credit note a create would issue, stores none.
"""

from __future__ import annotations

import typing
from typing import Any

import stripe

from emulator.engine import Engine
from emulator.state import Json, new_id
from emulator.wire.protocol import StripeApiError, check_params, list_object, to_int
from emulator.wire.routes import LIST_PARAMS, created_filter, render, retrieve, route

KIND = "credit_note"
REASONS = tuple(typing.get_args(typing.get_args(stripe.CreditNote.__annotations__["reason"])[0]))
CREATE_PARAMS = {"invoice", "amount", "lines", "reason", "memo", "metadata", "refund_amount", "credit_amount",
                 "out_of_band_amount", "effective_at", "email_type", "refunds", "shipping_cost"}


def _line_amount(invoice: Json, raw: Any, index: int) -> tuple[int, Json]:
    param = f"lines[{index}]"
    if not isinstance(raw, dict):
        raise StripeApiError(400, f"Invalid {param}", param=param)
    kind = raw.get("type")
    quantity = to_int(raw.get("quantity", 1), f"{param}[quantity]", minimum=0) if raw.get("quantity") else None
    if kind == "invoice_line_item":
        line = next((li for li in invoice["lines"]["data"] if li["id"] == raw.get("invoice_line_item")), None)
        if line is None:
            raise StripeApiError(400, f"No such invoice line item: '{raw.get('invoice_line_item')}'",
                                 code="resource_missing", param=f"{param}[invoice_line_item]")
        discount = sum(int(d["amount"]) for d in line.get("discount_amounts") or [])
        net = int(line["amount"]) - discount
        if raw.get("amount") not in (None, ""):
            amount = to_int(raw["amount"], f"{param}[amount]", minimum=0)
        elif quantity is not None:
            amount = round(net * quantity / max(1, int(line.get("quantity") or 1)))
        else:
            amount = net
        if amount > net:
            raise StripeApiError(400, f"The credit note line amount ({amount}) is greater than the invoice line "
                                      f"amount ({net}).", param=f"{param}[amount]")
        return amount, {"type": "invoice_line_item", "invoice_line_item": line["id"], "description":
                        line.get("description"), "quantity": quantity or line.get("quantity"),
                        "unit_amount": None, "unit_amount_decimal": None}
    if kind == "custom_line_item":
        if raw.get("unit_amount") in (None, ""):
            raise StripeApiError(400, f"Missing required param: {param}[unit_amount].", code="parameter_missing",
                                 param=f"{param}[unit_amount]")
        unit = to_int(raw["unit_amount"], f"{param}[unit_amount]", minimum=0)
        count = quantity if quantity is not None else 1
        return unit * count, {"type": "custom_line_item", "invoice_line_item": None,
                              "description": raw.get("description"), "quantity": count, "unit_amount": unit,
                              "unit_amount_decimal": str(unit)}
    raise StripeApiError(400, f"Invalid {param}[type]: must be one of custom_line_item, invoice_line_item",
                         code="parameter_invalid_string", param=f"{param}[type]")


def _build(engine: Engine, params: Json) -> tuple[Json, Json, Json]:
    """The credit note a create would issue, the invoice, and how its total is settled."""
    check_params(params, CREATE_PARAMS, ("invoice",))
    invoice = engine.get("invoice", str(params["invoice"]), "invoice", "invoice")
    if invoice["status"] not in ("open", "paid"):
        raise StripeApiError(400, f"You can only create credit notes on open or paid invoices; this invoice is "
                                  f"{invoice['status']}.", code="invoice_not_editable", param="invoice")
    now = engine.now_for(invoice["customer"])
    note_id = new_id("cn")
    lines: list[Json] = []
    amount = 0
    if params.get("lines"):
        for index, raw in enumerate(params["lines"] if isinstance(params["lines"], list) else []):
            line_amount, shape = _line_amount(invoice, raw, index)
            amount += line_amount
            lines.append({"id": new_id("cnli"), "object": "credit_note_line_item", "amount": line_amount,
                          "discount_amount": 0, "discount_amounts": [], "livemode": False,
                          "metadata": dict(raw.get("metadata") or {}), "pretax_credit_amounts": [],
                          "tax_rates": [], "taxes": [], **shape})
    if params.get("amount") not in (None, ""):
        explicit = to_int(params["amount"], "amount", minimum=1)
        if lines and explicit != amount:
            raise StripeApiError(400, "The credit note amount must equal the sum of its lines.", param="amount")
        amount = explicit
    if amount <= 0:
        raise StripeApiError(400, "A credit note needs a positive `amount` or `lines`.", param="amount")
    reason = params.get("reason")
    if reason not in (None, "") and reason not in REASONS:
        raise StripeApiError(400, f"Invalid reason: must be one of {', '.join(REASONS)}",
                             code="parameter_invalid_string", param="reason")
    split = {name: to_int(params[name], name, minimum=0) if params.get(name) not in (None, "") else 0
             for name in ("refund_amount", "credit_amount", "out_of_band_amount")}
    if invoice["status"] == "open":
        kind = "pre_payment"
        limit = int(invoice["amount_remaining"])
        if any(split.values()):
            raise StripeApiError(400, "refund_amount, credit_amount and out_of_band_amount are only for credit "
                                      "notes on paid invoices.", param="refund_amount")
    else:
        kind = "post_payment"
        limit = int(invoice["amount_paid"]) - int(invoice.get("post_payment_credit_notes_amount") or 0)
        if sum(split.values()) != amount:
            raise StripeApiError(400, f"The sum of refund_amount, credit_amount and out_of_band_amount "
                                      f"({sum(split.values())}) must equal the credit note amount ({amount}).",
                                 param="refund_amount")
    if amount > limit:
        raise StripeApiError(400, f"The credit note amount ({amount}) is greater than the invoice's creditable "
                                  f"amount ({limit}).", param="amount")
    count = len([n for n in engine.all(KIND) if n["invoice"] == invoice["id"]]) + 1
    note: Json = {
        "id": note_id, "object": KIND, "amount": amount, "amount_shipping": 0, "created": now,
        "currency": invoice["currency"], "customer": invoice["customer"], "customer_account": None,
        "customer_balance_transaction": None, "discount_amount": 0, "discount_amounts": [], "effective_at": now,
        "invoice": invoice["id"],
        "lines": {"object": "list", "data": lines, "has_more": False, "url": f"/v1/credit_notes/{note_id}/lines"},
        "livemode": False, "memo": params.get("memo"), "metadata": dict(params.get("metadata") or {}),
        "number": f"{invoice['number']}-CN-{count:02d}", "out_of_band_amount": split["out_of_band_amount"] or None,
        "pdf": f"https://pay.stripe.com/credit_notes/{note_id}/pdf",
        "post_payment_amount": amount if kind == "post_payment" else 0,
        "pre_payment_amount": amount if kind == "pre_payment" else 0,
        "pretax_credit_amounts": [], "reason": reason or None, "refunds": [], "shipping_cost": None,
        "status": "issued", "subtotal": amount, "subtotal_excluding_tax": amount, "total": amount,
        "total_excluding_tax": amount, "total_taxes": [], "type": kind, "voided_at": None,
    }
    return note, invoice, split


@route("GET", "/v1/credit_notes/preview")
def credit_notes_preview(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    note, _invoice, _split = _build(engine, {k: v for k, v in params.items() if k != "expand"})
    return render(engine, note, params)


@route("POST", "/v1/credit_notes")
def credit_notes_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    note, invoice, split = _build(engine, {k: v for k, v in params.items() if k != "expand"})
    now = int(note["created"])
    before = engine.snapshot(invoice)
    if note["type"] == "pre_payment":
        invoice["pre_payment_credit_notes_amount"] = int(invoice.get("pre_payment_credit_notes_amount") or 0) \
            + note["amount"]
        invoice["amount_due"] = max(0, int(invoice["amount_due"]) - note["amount"])
        invoice["amount_remaining"] = max(0, int(invoice["amount_remaining"]) - note["amount"])
    else:
        invoice["post_payment_credit_notes_amount"] = int(invoice.get("post_payment_credit_notes_amount") or 0) \
            + note["amount"]
        if split["refund_amount"]:
            intent_id = invoice.get("_payment_intent")
            if not intent_id:
                raise StripeApiError(400, "This invoice has no payment to refund.", param="refund_amount")
            refund = engine.create_refund({"payment_intent": intent_id, "amount": split["refund_amount"]})
            note["refunds"] = [{"amount_refunded": split["refund_amount"], "payment_record_refund": None,
                                "refund": refund["id"], "type": "refund"}]
        if split["credit_amount"]:
            customer = engine.get("customer", invoice["customer"], "customer")
            customer["balance"] = int(customer.get("balance") or 0) - split["credit_amount"]
    engine.put(KIND, note)
    engine.emit("credit_note.created", note, created=now)
    engine.emit_update("invoice.updated", invoice, before, created=now)
    if note["type"] == "pre_payment" and invoice["amount_remaining"] == 0 and invoice["status"] == "open":
        engine._mark_paid(invoice, now)
    return render(engine, note, params)


retrieve("/v1/credit_notes/{id}", KIND)


@route("GET", "/v1/credit_notes")
def credit_notes_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS | {"invoice", "customer", "customer_account"})
    invoice_id, customer = params.get("invoice"), params.get("customer")
    notes = [n for n in engine.all(KIND) if (not invoice_id or n["invoice"] == invoice_id)
             and (not customer or n["customer"] == customer)]
    return render(engine, list_object("/v1/credit_notes", created_filter(notes, params.get("created")), params),
                  params, is_list=True)


@route("POST", "/v1/credit_notes/{id}/void")
def credit_notes_void(engine: Engine, m: dict[str, str], params: Json) -> Json:
    note = engine.get(KIND, m["id"], KIND)
    if note["status"] != "issued":
        raise StripeApiError(400, "This credit note has already been voided.")
    invoice = engine.get("invoice", note["invoice"], "invoice")
    now = engine.now_for(note["customer"])
    before = engine.snapshot(invoice)
    if note["type"] == "pre_payment":
        invoice["pre_payment_credit_notes_amount"] = int(invoice.get("pre_payment_credit_notes_amount") or 0) \
            - note["amount"]
        if invoice["status"] == "open":
            invoice["amount_due"] = int(invoice["amount_due"]) + note["amount"]
            invoice["amount_remaining"] = int(invoice["amount_remaining"]) + note["amount"]
    else:
        invoice["post_payment_credit_notes_amount"] = int(invoice.get("post_payment_credit_notes_amount") or 0) \
            - note["amount"]
    note["status"] = "void"
    note["voided_at"] = now
    engine.emit("credit_note.voided", note, created=now)
    engine.emit_update("invoice.updated", invoice, before, created=now)
    return render(engine, note, params)


__all__ = ["KIND", "REASONS"]
