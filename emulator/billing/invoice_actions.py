"""Invoice endpoints beyond create/finalize/pay/void: update, delete, send, mark_uncollectible,
lines; invoice items list/retrieve/update/delete; invoice payments list/retrieve.

Behaviour follows Stripe's API reference:
- update: "Draft invoices are fully editable. Once an invoice is finalized, monetary values, as
  well as `collection_method`, become uneditable." The draft-only params are those the SDK marks
  so plus the monetary ones; a finalized invoice keeps description, footer, metadata, auto_advance,
  custom fields and the payment settings editable.
- delete: "Permanently deletes a one-off invoice draft ... Attempts to delete invoices that are no
  longer in a draft state will fail; once an invoice has been finalized or if an invoice is for a
  subscription, it must be voided." Emits `invoice.deleted`.
- send: for `collection_method=send_invoice`; a draft is finalized first; in test mode no email is
  sent "despite sending an `invoice.sent` event".
- mark_uncollectible: an open invoice becomes `uncollectible` (`invoice.marked_uncollectible`), with
  `status_details.uncollectible.reason=user_forgiven` (API 2026-09-30.endive's changelog).
- invoice items: updatable and deletable while their invoice is a draft (or they are pending);
  deleting one removes its line and emits `invoiceitem.deleted`.
- invoice payments: the `invoice_payment` objects the engine records on each invoice's `payments`.
"""

from __future__ import annotations

from typing import Any

from emulator.billing import discounts
from emulator.engine import Engine
from emulator.state import DAY, Json
from emulator.wire.protocol import StripeApiError, check_params, list_object, to_bool, to_int
from emulator.wire.routes import LIST_PARAMS, created_filter, render, route

# Editable after finalization (Stripe: monetary values and collection_method are not). Params the
# emulator doesn't model (tax rates, shipping, automatic tax, payment settings, Connect transfers)
# are refused as unknown, like the emulator's other endpoints do.
FINALIZED_EDITABLE = frozenset({
    "auto_advance", "custom_fields", "default_payment_method", "default_source", "description", "footer",
    "metadata", "statement_descriptor", "expand",
})
DRAFT_EDITABLE = FINALIZED_EDITABLE | {"collection_method", "days_until_due", "due_date", "discounts",
                                       "account_tax_ids", "number", "effective_at",
                                       "on_behalf_of"}
ITEM_UPDATE = {"amount", "description", "metadata", "discountable", "quantity", "period", "unit_amount_decimal",
               "price_data", "pricing", "tax_rates", "tax_behavior", "tax_code", "discounts"}


def _invoice(engine: Engine, invoice_id: str) -> Json:
    return engine.get("invoice", invoice_id, "invoice")


def recompute_totals(engine: Engine, invoice: Json) -> None:
    """Subtotal, discounts, total and amount_due from the lines."""
    discounts.reapply_invoice_discounts(engine, invoice)


def _not_editable(invoice: Json, param: str) -> StripeApiError:
    return StripeApiError(400, f"You can only modify `{param}` on draft invoices; this invoice is "
                               f"{invoice['status']}.", code="invoice_not_editable", param=param)


@route("POST", "/v1/invoices/{id}")
def invoices_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    invoice = _invoice(engine, m["id"])
    allowed = DRAFT_EDITABLE if invoice["status"] == "draft" else FINALIZED_EDITABLE
    for name in params:
        if name not in allowed:
            if name in DRAFT_EDITABLE:
                raise _not_editable(invoice, name)
            raise StripeApiError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
    now = engine.now_for(invoice["customer"])
    before = engine.snapshot(invoice)
    for name in ("description", "footer", "statement_descriptor", "default_payment_method", "default_source",
                 "number", "on_behalf_of"):
        if name in params:
            invoice[name] = params[name] or None
    if "effective_at" in params:
        invoice["effective_at"] = to_int(params["effective_at"], "effective_at") if params["effective_at"] != "" \
            else None
    if "account_tax_ids" in params:
        invoice["account_tax_ids"] = [str(t) for t in params["account_tax_ids"] or []] or None
    if "auto_advance" in params:
        invoice["auto_advance"] = to_bool(params["auto_advance"], "auto_advance")
    if "metadata" in params:
        engine._merge_metadata(invoice, params["metadata"])
    if "custom_fields" in params:
        invoice["custom_fields"] = list(params["custom_fields"] or []) or None
    if "collection_method" in params:
        method = str(params["collection_method"])
        if method not in ("charge_automatically", "send_invoice"):
            raise StripeApiError(400, f"Invalid collection_method: {method}", code="parameter_invalid_string",
                                 param="collection_method")
        invoice["collection_method"] = method
        if method == "charge_automatically":
            invoice["due_date"] = None
    if "days_until_due" in params:
        days = to_int(params["days_until_due"], "days_until_due", minimum=0)
        invoice["due_date"] = int(invoice["created"]) + days * DAY
    if "due_date" in params:
        invoice["due_date"] = to_int(params["due_date"], "due_date") if params["due_date"] != "" else None
    if "discounts" in params:
        discounts.set_invoice_discounts(engine, invoice, params["discounts"])
    if invoice.get("collection_method") == "send_invoice" and invoice.get("due_date") is None \
            and ("collection_method" in params):
        raise StripeApiError(400, "Invoices with `collection_method=send_invoice` require `days_until_due` or "
                                  "`due_date`.", param="days_until_due")
    engine.emit_update("invoice.updated", invoice, before, created=now)
    return render(engine, invoice, params)


@route("DELETE", "/v1/invoices/{id}")
def invoices_delete(engine: Engine, m: dict[str, str], params: Json) -> Json:
    invoice = _invoice(engine, m["id"])
    if invoice["status"] != "draft":
        raise StripeApiError(400, "You can only delete draft invoices; finalized invoices must be voided.",
                             code="invoice_not_editable")
    if engine.subscription_of(invoice) is not None:
        raise StripeApiError(400, "You can't delete an invoice generated by a subscription; void it instead.",
                             code="invoice_not_editable")
    now = engine.now_for(invoice["customer"])
    for item in engine.all("invoiceitem"):
        if item.get("invoice") == invoice["id"]:
            item["deleted"] = True
    invoice["deleted"] = True
    engine.emit("invoice.deleted", invoice, created=now)
    return {"id": invoice["id"], "object": "invoice", "deleted": True}


@route("POST", "/v1/invoices/{id}/send")
def invoices_send(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, set())
    invoice = _invoice(engine, m["id"])
    if invoice["collection_method"] != "send_invoice":
        raise StripeApiError(400, "You can only manually send an invoice if its collection method is "
                                  "'send_invoice'.", code="invoice_not_editable")
    if invoice["status"] in ("void", "uncollectible"):
        raise StripeApiError(400, f"You can't send an invoice that is {invoice['status']}.",
                             code="invoice_not_editable")
    now = engine.now_for(invoice["customer"])
    if invoice["status"] == "draft":
        engine.finalize_invoice(invoice, now)
    invoice["attempted"] = True
    engine.emit("invoice.sent", invoice, created=now)
    return render(engine, invoice, params)


@route("POST", "/v1/invoices/{id}/mark_uncollectible")
def invoices_mark_uncollectible(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, set())
    invoice = _invoice(engine, m["id"])
    if invoice["status"] != "open":
        raise StripeApiError(400, "You can only mark open invoices as uncollectible.", code="invoice_not_editable")
    now = engine.now_for(invoice["customer"])
    invoice["status"] = "uncollectible"
    invoice["status_transitions"]["marked_uncollectible_at"] = now
    # Since 2026-09-30.endive: why it is uncollectible; marked by the user -> user_forgiven.
    invoice["status_details"] = {"uncollectible": {"reason": "user_forgiven"}}
    invoice["next_payment_attempt"] = None
    engine.emit("invoice.marked_uncollectible", invoice, created=now)
    return render(engine, invoice, params)


@route("GET", "/v1/invoices/{id}/lines")
def invoices_lines(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"limit", "starting_after", "ending_before"})
    invoice = _invoice(engine, m["id"])
    lines = list(invoice["lines"]["data"])
    # Stripe lists lines in invoice order; list_object sorts newest first, so keep their order by seq.
    ordered = [dict(line, created=0, _seq=-index) for index, line in enumerate(lines)]
    listed = list_object(f"/v1/invoices/{invoice['id']}/lines", ordered, params)
    listed["data"] = [{k: v for k, v in line.items() if k != "created"} for line in listed["data"]]
    return render(engine, listed, params, is_list=True)


# --- invoice items -------------------------------------------------------------------------------
def _item(engine: Engine, item_id: str) -> Json:
    return engine.get("invoiceitem", item_id, "invoiceitem")


def _item_invoice(engine: Engine, item: Json) -> Json | None:
    invoice_id = item.get("invoice")
    invoice = engine.objects.get("invoice", {}).get(invoice_id) if invoice_id else None
    return invoice if invoice is not None and not invoice.get("deleted") else None


def _line_of(invoice: Json, item_id: str) -> Json | None:
    for line in invoice["lines"]["data"]:
        details = (line.get("parent") or {}).get("invoice_item_details") or {}
        if details.get("invoice_item") == item_id:
            return line  # type: ignore[no-any-return]
    return None


def _editable(engine: Engine, item: Json) -> Json | None:
    invoice = _item_invoice(engine, item)
    if invoice is not None and invoice["status"] != "draft":
        raise StripeApiError(400, "You can only modify invoice items on draft invoices; the invoice "
                                  f"{invoice['id']} is {invoice['status']}.", code="invoice_not_editable")
    return invoice


@route("GET", "/v1/invoiceitems/{id}")
def invoice_items_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, _item(engine, m["id"]), params)


@route("GET", "/v1/invoiceitems")
def invoice_items_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS | {"customer", "invoice", "pending", "customer_account"})
    customer = params.get("customer")
    invoice_id = params.get("invoice")
    pending = to_bool(params["pending"], "pending") if "pending" in params else None

    def keep(item: Json) -> bool:
        if customer and item["customer"] != customer:
            return False
        if invoice_id and item.get("invoice") != invoice_id:
            return False
        return pending is None or (item.get("invoice") is None) == pending

    items = created_filter([i for i in engine.all("invoiceitem") if keep(i)], params.get("created"), "date")
    listed = list_object("/v1/invoiceitems", [dict(i, created=i["date"]) for i in items], params)
    listed["data"] = [{k: v for k, v in i.items() if k != "created"} for i in listed["data"]]
    return render(engine, listed, params, is_list=True)


@route("POST", "/v1/invoiceitems/{id}")
def invoice_items_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, ITEM_UPDATE)
    item = _item(engine, m["id"])
    invoice = _editable(engine, item)
    if "description" in params:
        item["description"] = params["description"] or None
    if "metadata" in params:
        engine._merge_metadata(item, params["metadata"])
    if "discountable" in params:
        item["discountable"] = to_bool(params["discountable"], "discountable")
    if "amount" in params:
        item["amount"] = to_int(params["amount"], "amount")
    if "quantity" in params:
        quantity = to_int(params["quantity"], "quantity", minimum=1)
        unit = int(item["amount"]) // max(1, int(item.get("quantity") or 1))
        item["quantity"], item["quantity_decimal"] = quantity, str(quantity)
        if "amount" not in params:
            item["amount"] = unit * quantity
    line = _line_of(invoice, item["id"]) if invoice is not None else None
    if invoice is not None and line is not None:
        line.update({"amount": item["amount"], "subtotal": item["amount"], "description": item["description"],
                     "quantity": item["quantity"], "discountable": item["discountable"]})
        recompute_totals(engine, invoice)
    return render(engine, item, params)


@route("DELETE", "/v1/invoiceitems/{id}")
def invoice_items_delete(engine: Engine, m: dict[str, str], params: Json) -> Json:
    item = _item(engine, m["id"])
    invoice = _editable(engine, item)
    if invoice is not None:
        invoice["lines"]["data"] = [
            line for line in invoice["lines"]["data"]
            if ((line.get("parent") or {}).get("invoice_item_details") or {}).get("invoice_item") != item["id"]
        ]
        recompute_totals(engine, invoice)
    item["deleted"] = True
    engine.emit("invoiceitem.deleted", item, created=engine.now_for(item["customer"]))
    return {"id": item["id"], "object": "invoiceitem", "deleted": True}


# --- invoice payments ------------------------------------------------------------------------------
def _payments(engine: Engine) -> list[Json]:
    return [p for invoice in engine.all("invoice") for p in invoice["payments"]["data"]]


@route("GET", "/v1/invoice_payments/{id}")
def invoice_payments_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    for payment in _payments(engine):
        if payment["id"] == m["id"]:
            return render(engine, payment, params)
    raise StripeApiError(404, f"No such invoice payment: '{m['id']}'", code="resource_missing", param="id")


@route("GET", "/v1/invoice_payments")
def invoice_payments_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS | {"invoice", "payment", "status"})
    invoice_id = params.get("invoice")
    status = params.get("status")
    payment_filter: Any = params.get("payment") or {}

    def keep(payment: Json) -> bool:
        if invoice_id and payment["invoice"] != invoice_id:
            return False
        if status and payment["status"] != status:
            return False
        intent = payment_filter.get("payment_intent") if isinstance(payment_filter, dict) else None
        return not intent or payment["payment"].get("payment_intent") == intent

    items = created_filter([p for p in _payments(engine) if keep(p)], params.get("created"))
    return render(engine, list_object("/v1/invoice_payments", items, params), params, is_list=True)


__all__ = ["recompute_totals"]
