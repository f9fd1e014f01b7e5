"""The emulator's field catalogue comes from the stripe SDK's annotations, and conform() fits objects to it."""

from __future__ import annotations

from emulator.objects import catalogue


def test_catalogue_is_derived_from_the_sdk_annotations() -> None:
    invoice = catalogue.describe("invoice")
    assert invoice["due_date"] == {"kind": "int", "nullable": True}
    assert invoice["customer"]["expandable"] is True and invoice["customer"]["refs"] == ["customer"]
    assert invoice["lines"]["kind"] == "list_object" and invoice["lines"]["refs"] == ["line_item"]
    assert invoice["status_transitions"]["kind"] == "nested"
    subscription = catalogue.describe("subscription")
    assert {"incomplete", "incomplete_expired", "past_due", "unpaid"} <= set(subscription["status"]["enum"])
    assert "current_period_end" not in subscription  # basil: on the items
    assert "current_period_end" in catalogue.describe("subscription_item")
    # Every resource class of the SDK is there, under its object name.
    for name in ("charge", "payment_intent", "dispute", "radar.early_fraud_warning", "checkout.session",
                 "test_helpers.test_clock", "billing_portal.configuration", "event", "webhook_endpoint"):
        assert catalogue.spec_for(name) is not None, name


def test_conform_adds_missing_fields_and_drops_unknown_ones() -> None:
    shaped = catalogue.conform({"id": "evt_1", "object": "event", "type": "customer.created",
                                "delivery_success": True, "_private": 1,
                                "data": {"object": {"id": "cus_1", "object": "customer", "invented": 1}}})
    assert "delivery_success" not in shaped and "_private" not in shaped
    assert shaped["request"] is None or isinstance(shaped["request"], dict)
    customer = shaped["data"]["object"]
    assert "invented" not in customer and customer["email"] is None
    assert set(customer) == {n for n in catalogue.spec_for("customer").fields if n != "deleted"}  # type: ignore[union-attr]
    report = catalogue.validate(shaped)
    assert report.objects == 2 and not report.kinds("unknown")


def test_validate_reports_wrong_types_enums_and_unknown_fields() -> None:
    report = catalogue.validate({"id": "in_1", "object": "invoice", "status": "bogus", "amount_due": "12",
                                 "made_up": True})
    assert report.kinds("enum") and report.kinds("type") and report.kinds("unknown") and report.kinds("missing")
    assert report.percent < 10
