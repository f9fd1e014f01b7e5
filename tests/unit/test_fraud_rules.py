"""Pure rules of the EFW service: the refund, partial refund and block idempotency keys, the percentile used for time to
decision, and bulk runs that keep going past a failing row."""

from __future__ import annotations

from services import fraud_warnings as efw


def test_refund_key_is_derived_from_the_warning() -> None:
    assert efw.refund_key("issfr_123") == "refund:efw:issfr_123"


def test_keys_for_partial_refunds_retries_and_blocks_follow_the_intent() -> None:
    from services.efw_radar import block_key

    # The first full refund, and a new one after our refund re_1 failed at Stripe.
    assert efw._full_refund_key("issfr_1", None) == "refund:efw:issfr_1"
    assert efw._full_refund_key("issfr_1", "re_1") == "refund:efw:issfr_1:after:re_1"
    # The same confirmation repeats its key; a later partial refund starts from more already refunded.
    assert efw._partial_refund_key("issfr_1", 0, 1500) == efw._partial_refund_key("issfr_1", 0, 1500)
    assert efw._partial_refund_key("issfr_1", 1500, 1500) == "refund:efw:issfr_1:partial:1500:1500"
    assert block_key("issfr_1", "email", 2) == "block:efw:issfr_1:email:2"


def test_bulk_keeps_going_past_failures_and_reports_progress() -> None:
    seen: list[tuple[int, int]] = []

    def run(efw_id: str) -> str:
        if efw_id == "refused":
            raise efw.EfwActionError("The charge is disputed now")
        if efw_id == "broken":
            raise RuntimeError("database went away")
        return "done"

    outcomes = efw._bulk(["a", "refused", "broken", "b"], run, lambda done, total: seen.append((done, total)))
    assert [(o.efw_id, o.ok) for o in outcomes] == [("a", True), ("refused", False), ("broken", False), ("b", True)]
    assert outcomes[1].message == "The charge is disputed now"
    assert "RuntimeError" in outcomes[2].message and "database went away" not in outcomes[2].message
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def _efw_row(efw_id: str, amount: int, refunded: int = 0, *, currency: str = "usd", status: str = "open",
             actionable: bool = True, dispute_id: str | None = None) -> efw.EfwRow:
    return efw.EfwRow(id=efw_id, created=None, charge_id=f"ch_{efw_id}", customer_email=None, amount=amount,
                      amount_refunded=refunded, currency=currency, fraud_type=None, actionable=actionable,
                      status=status, actor=None, decided_at=None, reason=None, refund_id=None,
                      dispute_id=dispute_id, dispute_status="needs_response" if dispute_id else None)


def test_bulk_refund_plan_sends_each_refundable_remainder_and_totals_only_those() -> None:
    planned = efw.plan_bulk_refund([
        _efw_row("full", 1000), _efw_row("partial", 2900, 900), _efw_row("disputed", 900, dispute_id="dp_1"),
        _efw_row("done", 500, 500), _efw_row("stale", 700, actionable=False),
        _efw_row("ignored", 300, status="ignored"), _efw_row("yen", 1000, currency="jpy"),
    ])
    assert [(p.row.id, p.amount, p.shown) for p in planned] == [
        ("full", 1000, "10.00 USD"), ("partial", 2000, "20.00 USD"), ("disputed", 0, "0.00 USD"),
        ("done", 0, "0.00 USD"), ("stale", 0, "0.00 USD"), ("ignored", 0, "0.00 USD"), ("yen", 1000, "1,000 JPY")]
    reasons = {p.row.id: p.skip_reason for p in planned}
    assert reasons["full"] is None and reasons["partial"] is None and reasons["yen"] is None
    assert "disputed" in str(reasons["disputed"]) and "fully refunded" in str(reasons["done"])
    assert "actionable" in str(reasons["stale"]) and "ignored" in str(reasons["ignored"])
    assert efw.planned_totals(planned) == {"usd": 3000, "jpy": 1000}
