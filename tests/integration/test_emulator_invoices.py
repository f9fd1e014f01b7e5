"""Contract tests through the real stripe SDK: invoice update/delete/send/void/mark_uncollectible and
lines, invoice items list/retrieve/update/delete, and invoice payments list/retrieve."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle


@pytest.fixture
def client(emulator: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_invoices", base_addresses={"api": emulator.base_url},
                               max_network_retries=0)


def _customer(client: stripe.StripeClient) -> Any:
    return client.v1.customers.create({"email": "i@example.io", "payment_method": "pm_card_visa",
                                       "invoice_settings": {"default_payment_method": "pm_card_visa"}})


def _types(client: stripe.StripeClient, object_id: str) -> list[str]:
    events = list(reversed(client.v1.events.list({"limit": 100}).data))
    return [e.type for e in events if e.data.object.to_dict().get("id") == object_id]


def _draft(client: stripe.StripeClient, customer: Any, *amounts: int, **params: Any) -> Any:
    invoice = client.v1.invoices.create({"customer": customer.id, **params})  # type: ignore[arg-type]
    for amount in amounts:
        client.v1.invoice_items.create({"customer": customer.id, "invoice": invoice.id, "amount": amount,
                                        "currency": "usd", "description": f"Item {amount}"})
    return client.v1.invoices.retrieve(invoice.id)


def test_update_draft_then_only_non_monetary_fields_once_finalized(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    invoice = _draft(client, customer, 1000)
    updated = client.v1.invoices.update(invoice.id, {"description": "Consulting", "metadata": {"po": "42"},
                                                     "collection_method": "send_invoice", "days_until_due": 30})
    assert (updated.description, updated.to_dict()["metadata"]["po"], updated.collection_method) == (
        "Consulting", "42", "send_invoice")
    assert updated.due_date == updated.created + 30 * 86_400
    client.v1.invoices.finalize_invoice(invoice.id)
    again = client.v1.invoices.update(invoice.id, {"footer": "Thanks", "metadata": {"po": ""}})
    assert again.footer == "Thanks" and "po" not in (again.metadata or {})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.update(invoice.id, {"collection_method": "charge_automatically"})
    assert caught.value.code == "invoice_not_editable" and caught.value.param == "collection_method"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.invoices.update(invoice.id, {"bogus": "x"})  # type: ignore[arg-type]
    assert unknown.value.code == "parameter_unknown"
    assert "invoice.updated" in _types(client, invoice.id)


def test_delete_only_drafts(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    draft = _draft(client, customer, 500)
    deleted = client.v1.invoices.delete(draft.id)
    assert deleted.deleted is True and deleted.id == draft.id
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.invoices.retrieve(draft.id)
    assert gone.value.http_status == 404
    assert "invoice.deleted" in _types(client, draft.id)
    opened = _draft(client, customer, 500)
    client.v1.invoices.finalize_invoice(opened.id)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.delete(opened.id)
    assert refused.value.code == "invoice_not_editable"


def test_send_void_and_mark_uncollectible(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    auto = _draft(client, customer, 700)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.send_invoice(auto.id)  # charge_automatically invoices are not sent by hand
    manual = _draft(client, customer, 700, collection_method="send_invoice", days_until_due=14)
    sent = client.v1.invoices.send_invoice(manual.id)
    assert sent.status == "open" and sent.status_transitions.finalized_at is not None
    assert _types(client, manual.id)[-2:] == ["invoice.finalized", "invoice.sent"]

    voided = client.v1.invoices.void_invoice(manual.id)
    assert voided.status == "void" and voided.status_transitions.voided_at is not None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.void_invoice(manual.id)
    assert "invoice.voided" in _types(client, manual.id)

    bad_debt = _draft(client, customer, 900, collection_method="send_invoice", days_until_due=14)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.mark_uncollectible(bad_debt.id)  # a draft is not open
    client.v1.invoices.finalize_invoice(bad_debt.id)
    marked = client.v1.invoices.mark_uncollectible(bad_debt.id)
    assert marked.status == "uncollectible" and marked.status_transitions.marked_uncollectible_at is not None
    assert marked.status_details is not None and marked.status_details.uncollectible is not None
    assert marked.status_details.uncollectible.reason == "user_forgiven"
    assert "invoice.marked_uncollectible" in _types(client, bad_debt.id)


def test_lines_and_invoice_items(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    invoice = _draft(client, customer, 100, 200, 300)
    lines = client.v1.invoices.line_items.list(invoice.id, {"limit": 2})
    assert [line.amount for line in lines.data] == [100, 200] and lines.has_more is True
    rest = client.v1.invoices.line_items.list(invoice.id, {"starting_after": lines.data[-1].id})
    assert [line.amount for line in rest.data] == [300] and rest.has_more is False

    items = client.v1.invoice_items.list({"invoice": invoice.id})
    assert sorted(i.amount for i in items.data) == [100, 200, 300]
    first = next(i for i in items.data if i.amount == 100)
    assert client.v1.invoice_items.retrieve(first.id).invoice == invoice.id
    changed = client.v1.invoice_items.update(first.id, {"amount": 150, "description": "Setup"})
    assert (changed.amount, changed.description) == (150, "Setup")
    assert client.v1.invoices.retrieve(invoice.id).total == 650
    second = next(i for i in items.data if i.amount == 200)
    assert client.v1.invoice_items.delete(second.id).deleted is True
    after = client.v1.invoices.retrieve(invoice.id)
    assert (after.total, after.amount_due, len(after.lines.data)) == (450, 450, 2)
    assert "invoiceitem.deleted" in _types(client, second.id)

    client.v1.invoices.finalize_invoice(invoice.id)
    with pytest.raises(stripe.InvalidRequestError) as locked:
        client.v1.invoice_items.update(first.id, {"amount": 1})
    assert locked.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoice_items.delete(first.id)


def test_invoice_payments_list_and_retrieve(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    invoice = _draft(client, customer, 1200)
    client.v1.invoices.finalize_invoice(invoice.id)
    paid = client.v1.invoices.pay(invoice.id)
    assert paid.status == "paid"
    payments = client.v1.invoice_payments.list({"invoice": invoice.id})
    assert len(payments.data) == 1
    payment = payments.data[0]
    assert (payment.object, payment.status, payment.amount_paid, payment.invoice) == (
        "invoice_payment", "paid", 1200, invoice.id)
    assert client.v1.invoice_payments.retrieve(payment.id).id == payment.id
    intent = payment.payment.payment_intent
    assert [p.id for p in client.v1.invoice_payments.list(
        {"payment": {"type": "payment_intent", "payment_intent": str(intent)}}).data] == [payment.id]
    assert client.v1.invoice_payments.list({"status": "open"}).data == []
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.invoice_payments.retrieve("inpay_missing")
    assert missing.value.http_status == 404
