"""Contract tests through the real stripe SDK: credit notes — preview, create on open (pre-payment)
and paid (post-payment, refund / customer credit) invoices, list, retrieve, void."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle


@pytest.fixture
def client(emulator: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_credit_notes", base_addresses={"api": emulator.base_url},
                               max_network_retries=0)


def _invoice(client: stripe.StripeClient, *amounts: int, pay: bool = False) -> tuple[Any, Any]:
    customer = client.v1.customers.create({"email": "cn@example.io", "payment_method": "pm_card_visa",
                                           "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    invoice = client.v1.invoices.create({"customer": customer.id, "collection_method": "send_invoice",
                                         "days_until_due": 30})
    for amount in amounts:
        client.v1.invoice_items.create({"customer": customer.id, "invoice": invoice.id, "amount": amount,
                                        "currency": "usd", "description": f"Line {amount}"})
    client.v1.invoices.finalize_invoice(invoice.id)
    if pay:
        client.v1.invoices.pay(invoice.id, {"payment_method": "pm_card_visa"})
    return customer, client.v1.invoices.retrieve(invoice.id)


def test_pre_payment_credit_note_on_an_open_invoice(client: stripe.StripeClient) -> None:
    _customer, invoice = _invoice(client, 3000, 2000)
    line = invoice.lines.data[0]
    preview = client.v1.credit_notes.preview({"invoice": invoice.id, "lines": [
        {"type": "invoice_line_item", "invoice_line_item": line.id, "amount": 1000}]})
    assert (preview.amount, preview.type, preview.status) == (1000, "pre_payment", "issued")
    assert client.v1.credit_notes.list({"invoice": invoice.id}).data == []  # a preview stores nothing

    note = client.v1.credit_notes.create({"invoice": invoice.id, "reason": "order_change", "lines": [
        {"type": "invoice_line_item", "invoice_line_item": line.id, "amount": 1000},
        {"type": "custom_line_item", "unit_amount": 250, "quantity": 2, "description": "Goodwill"}]})
    assert (note.amount, note.total, note.type, note.reason, note.invoice) == (
        1500, 1500, "pre_payment", "order_change", invoice.id)
    assert note.number == f"{invoice.number}-CN-01" and len(note.lines.data) == 2
    credited = client.v1.invoices.retrieve(invoice.id)
    assert (credited.amount_due, credited.amount_remaining, credited.pre_payment_credit_notes_amount) == (
        3500, 3500, 1500)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.create({"invoice": invoice.id, "amount": 9000})  # more than remains due
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.create({"invoice": invoice.id, "amount": 100, "reason": "because"})

    voided = client.v1.credit_notes.void_credit_note(note.id)
    assert voided.status == "void" and voided.voided_at is not None
    restored = client.v1.invoices.retrieve(invoice.id)
    assert (restored.amount_remaining, restored.pre_payment_credit_notes_amount) == (5000, 0)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.void_credit_note(note.id)
    events = [e.type for e in client.v1.events.list({"limit": 100}).data if e.type.startswith("credit_note.")]
    assert events == ["credit_note.voided", "credit_note.created"]


def test_post_payment_credit_note_refunds_and_credits(client: stripe.StripeClient) -> None:
    customer, invoice = _invoice(client, 4000, pay=True)
    assert invoice.status == "paid"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.create({"invoice": invoice.id, "amount": 1000})  # the split is missing
    note = client.v1.credit_notes.create({"invoice": invoice.id, "amount": 1500, "refund_amount": 1000,
                                          "credit_amount": 500})
    assert (note.type, note.post_payment_amount, note.pre_payment_amount) == ("post_payment", 1500, 0)
    assert note.refunds and note.refunds[0].amount_refunded == 1000
    refund = client.v1.refunds.retrieve(str(note.refunds[0].refund))
    assert (refund.amount, refund.status) == (1000, "succeeded")
    assert client.v1.customers.retrieve(customer.id).balance == -500  # a credit on the customer's balance
    assert client.v1.invoices.retrieve(invoice.id).post_payment_credit_notes_amount == 1500
    assert client.v1.credit_notes.retrieve(note.id).id == note.id
    assert [n.id for n in client.v1.credit_notes.list({"customer": customer.id}).data] == [note.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.create({"invoice": invoice.id, "amount": 3000, "out_of_band_amount": 3000})


def test_no_credit_notes_on_drafts(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "draft@example.io"})
    draft = client.v1.invoices.create({"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.credit_notes.create({"invoice": draft.id, "amount": 100})
    assert refused.value.param == "invoice"
