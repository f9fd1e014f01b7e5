"""Contract tests through the real stripe SDK: balance transactions for charges (Stripe's standard
US card pricing, 2.9% + 30¢), refunds and dispute withdrawals/reinstatements; the balance."""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle
from tests.integration.conftest import confirmed_payment


@pytest.fixture
def client(emulator: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_balance", base_addresses={"api": emulator.base_url}, max_network_retries=0)


def _pay(client: stripe.StripeClient, card: str, amount: int = 2000) -> Any:
    return confirmed_payment(client, card, amount)


def test_charge_and_refund_balance_transactions(client: stripe.StripeClient) -> None:
    intent = _pay(client, "pm_card_visa", 2000)
    charge = client.v1.charges.retrieve(str(intent.latest_charge), {"expand": ["balance_transaction"]})
    txn = charge.balance_transaction
    assert isinstance(txn, stripe.BalanceTransaction)
    # 2.9% of $20.00 = 58¢, + 30¢.
    assert (txn.type, txn.reporting_category, txn.amount, txn.fee, txn.net, txn.source) == (
        "charge", "charge", 2000, 88, 1912, charge.id)
    assert [(f.type, f.amount) for f in txn.fee_details] == [("stripe_fee", 88)]
    assert txn.status == "pending" and txn.available_on > txn.created
    assert client.v1.balance_transactions.retrieve(txn.id).net == 1912

    refund = client.v1.refunds.create({"charge": charge.id, "amount": 500})
    refund_txn = client.v1.balance_transactions.retrieve(str(refund.balance_transaction))
    assert (refund_txn.type, refund_txn.amount, refund_txn.fee, refund_txn.net, refund_txn.source) == (
        "refund", -500, 0, -500, refund.id)
    listed = client.v1.balance_transactions.list({"type": "charge"})
    assert [t.id for t in listed.data] == [txn.id]
    assert [t.id for t in client.v1.balance_transactions.list({"source": refund.id}).data] == [refund_txn.id]
    assert {t.id for t in client.v1.balance_transactions.list().data} == {txn.id, refund_txn.id}

    big = _pay(client, "pm_card_visa", 12345)
    big_txn = client.v1.balance_transactions.retrieve(
        str(client.v1.charges.retrieve(str(big.latest_charge)).balance_transaction))
    assert (big_txn.fee, big_txn.net) == (358 + 30, 12345 - 388)  # 2.9% of 12345 = 358.005 -> 358

    balance = client.v1.balance.retrieve()
    assert [(b.currency, b.amount) for b in balance.pending] == [("usd", 1912 + 12345 - 388)]
    assert [(b.currency, b.amount) for b in balance.available] == [("usd", -500)]


def test_dispute_withdrawal_and_reinstatement(client: stripe.StripeClient) -> None:
    intent = _pay(client, "pm_card_createDispute", 3000)
    dispute = client.v1.disputes.list({"payment_intent": intent.id}).data[0]
    withdrawal = dispute.balance_transactions[0]
    assert (withdrawal.type, withdrawal.reporting_category, withdrawal.amount, withdrawal.fee, withdrawal.net) == (
        "adjustment", "dispute", -3000, 1500, -4500)
    assert client.v1.balance_transactions.retrieve(withdrawal.id).source == dispute.id
    client.v1.disputes.update(dispute.id, {"evidence": {"uncategorized_text": "winning_evidence"}, "submit": True})
    deadline = time.monotonic() + 5
    while client.v1.disputes.retrieve(dispute.id).status != "won" and time.monotonic() < deadline:
        time.sleep(0.05)
    reinstated = [t for t in client.v1.balance_transactions.list({"source": dispute.id}).data
                  if t.reporting_category == "dispute_reversal"]
    assert [(t.amount, t.fee, t.net) for t in reinstated] == [(3000, 0, 3000)]


def test_refund_that_fails_later_gives_the_amount_back(client: stripe.StripeClient) -> None:
    intent = _pay(client, "pm_card_refundFail", 1000)
    refund = client.v1.refunds.create({"payment_intent": intent.id})
    deadline = time.monotonic() + 5
    while client.v1.refunds.retrieve(refund.id).status != "failed" and time.monotonic() < deadline:
        time.sleep(0.05)
    failed = client.v1.refunds.retrieve(refund.id)
    assert failed.status == "failed"
    back = client.v1.balance_transactions.retrieve(str(failed.failure_balance_transaction))
    assert (back.type, back.reporting_category, back.amount, back.net, back.source) == (
        "refund_failure", "refund_failure", 1000, 1000, refund.id)
