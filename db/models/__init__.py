"""Models grouped by Stripe area, as dj-stripe does; import everything from here."""

from db.models.audit import AuditLog
from db.models.base import Base
from db.models.billing import (
    Charge,
    Customer,
    Invoice,
    PlanChange,
    Refund,
    UserSubscription,
)
from db.models.disputes import Dispute, DisputeEvidenceDraft, DisputeEvidenceFile
from db.models.events import AppSetting, MetricPoint, StripeEvent, WorkerLease
from db.models.fraud import FraudWarning, RadarBlock
from db.models.golive import ChecklistItem, MetricsSnapshot, QaResult, QaRun, Signoff
from db.models.launch import ChangeErrorResolution, SmokeTest
from db.models.metric_rollup import MetricHourly
from db.models.reconcile import ReconcileAction, ReconcileRun

__all__ = [
    "AppSetting",
    "AuditLog",
    "Base",
    "ChangeErrorResolution",
    "Charge",
    "ChecklistItem",
    "Customer",
    "Dispute",
    "DisputeEvidenceDraft",
    "DisputeEvidenceFile",
    "FraudWarning",
    "Invoice",
    "MetricHourly",
    "MetricPoint",
    "MetricsSnapshot",
    "PlanChange",
    "QaResult",
    "QaRun",
    "RadarBlock",
    "ReconcileAction",
    "ReconcileRun",
    "Refund",
    "Signoff",
    "SmokeTest",
    "StripeEvent",
    "UserSubscription",
    "WorkerLease",
]
