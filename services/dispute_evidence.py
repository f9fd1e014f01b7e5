"""Stripe's dispute evidence fields, grouped as the Dashboard groups them, with guidance
per dispute reason, an auto-drafted first version, and local validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Stripe's limits (API reference, Dispute evidence): 150,000 characters of text in
# total; files up to 5 MB, as PDF, JPEG or PNG, uploaded with purpose dispute_evidence.
TEXT_LIMIT = 150_000
FILE_MAX_BYTES = 5 * 1024 * 1024
FILE_TYPES = {b"%PDF-": "pdf", b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png"}


@dataclass(frozen=True)
class EvidenceField:
    name: str
    label: str
    is_file: bool = False
    multiline: bool = False


GROUPS: dict[str, list[EvidenceField]] = {
    "Customer": [
        EvidenceField("customer_name", "Customer name"),
        EvidenceField("customer_email_address", "Customer email"),
        EvidenceField("billing_address", "Billing address", multiline=True),
        EvidenceField("customer_purchase_ip", "Purchase IP address"),
        EvidenceField("customer_signature", "Customer signature", is_file=True),
        EvidenceField("customer_communication", "Customer communication", is_file=True),
    ],
    "Product or service": [
        EvidenceField("product_description", "Product description", multiline=True),
        EvidenceField("service_date", "Service date"),
        EvidenceField("service_documentation", "Service documentation", is_file=True),
        EvidenceField("access_activity_log", "Access activity log", multiline=True),
        EvidenceField("receipt", "Receipt", is_file=True),
    ],
    "Shipping": [
        EvidenceField("shipping_address", "Shipping address", multiline=True),
        EvidenceField("shipping_carrier", "Shipping carrier"),
        EvidenceField("shipping_date", "Shipping date"),
        EvidenceField("shipping_tracking_number", "Tracking number"),
        EvidenceField("shipping_documentation", "Shipping documentation", is_file=True),
    ],
    "Policies": [
        EvidenceField("refund_policy", "Refund policy", is_file=True),
        EvidenceField("refund_policy_disclosure", "Refund policy disclosure", multiline=True),
        EvidenceField("refund_refusal_explanation", "Refund refusal explanation", multiline=True),
        EvidenceField("cancellation_policy", "Cancellation policy", is_file=True),
        EvidenceField("cancellation_policy_disclosure", "Cancellation policy disclosure", multiline=True),
        EvidenceField("cancellation_rebuttal", "Cancellation rebuttal", multiline=True),
    ],
    "Duplicate charge": [
        EvidenceField("duplicate_charge_id", "Other charge id"),
        EvidenceField("duplicate_charge_explanation", "Explanation", multiline=True),
        EvidenceField("duplicate_charge_documentation", "Documentation", is_file=True),
    ],
    "Other": [
        EvidenceField("uncategorized_text", "Additional information", multiline=True),
        EvidenceField("uncategorized_file", "Other file", is_file=True),
    ],
}
ALL_FIELDS = {f.name: f for fields in GROUPS.values() for f in fields}
TEXT_FIELDS = [f.name for f in ALL_FIELDS.values() if not f.is_file]
FILE_FIELDS = [f.name for f in ALL_FIELDS.values() if f.is_file]

GUIDANCE: dict[str, tuple[str, list[str]]] = {
    "fraudulent": ("The cardholder says they did not authorise the payment. Show the customer is who paid and used "
                   "the service.", ["customer_name", "customer_email_address", "billing_address",
                                    "customer_purchase_ip", "access_activity_log", "receipt"]),
    "subscription_canceled": ("The customer says they cancelled. Show they agreed to the terms and had not "
                              "cancelled before this charge.", ["cancellation_policy",
                                                                "cancellation_policy_disclosure",
                                                                "cancellation_rebuttal", "access_activity_log"]),
    "product_not_received": ("The customer says they did not receive the service. Show it was delivered and "
                             "used.", ["service_date", "service_documentation", "access_activity_log",
                                       "product_description"]),
    "duplicate": ("The customer says they were charged twice. Show the charges are for different things.",
                  ["duplicate_charge_id", "duplicate_charge_explanation", "duplicate_charge_documentation"]),
    "credit_not_processed": ("The customer says a refund was promised. Show the refund policy and why no refund "
                             "is due.", ["refund_policy", "refund_policy_disclosure", "refund_refusal_explanation"]),
    "product_unacceptable": ("The customer says the service was not as described. Show what was described and "
                             "delivered.", ["product_description", "service_documentation", "refund_policy"]),
    "unrecognized": ("The customer does not recognise the charge. Show who they are and what they bought.",
                     ["customer_name", "customer_email_address", "product_description", "receipt"]),
    "general": ("Describe the purchase and the service, and attach what supports it.",
                ["product_description", "uncategorized_text", "receipt"]),
}


def guidance_for(reason: str | None) -> tuple[str, list[str]]:
    return GUIDANCE.get(reason or "general", GUIDANCE["general"])


def text_length(fields: dict[str, Any]) -> int:
    return sum(len(str(fields.get(name) or "")) for name in TEXT_FIELDS)


def file_type(content: bytes) -> str | None:
    """By magic bytes, never by the file's name."""
    for magic, kind in FILE_TYPES.items():
        if content.startswith(magic):
            return kind
    return None


def check_file(content: bytes) -> str | None:
    """Why a file cannot be evidence, or None."""
    if len(content) > FILE_MAX_BYTES:
        return f"The file is {len(content) / 1024 / 1024:.1f} MB; Stripe accepts up to 5 MB."
    if file_type(content) is None:
        return "Only PDF, JPEG or PNG files can be evidence."
    return None


def check_text(fields: dict[str, Any]) -> str | None:
    unknown = [name for name in fields if name not in ALL_FIELDS]
    if unknown:
        return f"Unknown evidence field: {unknown[0]}."
    length = text_length(fields)
    if length > TEXT_LIMIT:
        return f"The evidence text is {length:,} characters; Stripe accepts up to {TEXT_LIMIT:,} in total."
    return None
