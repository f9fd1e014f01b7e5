"""Models grouped by Stripe area, as dj-stripe does; import everything from here."""

from db.models.audit import AuditLog
from db.models.base import Base
from db.models.billing import (
    Charge,
    Customer,
    Invoice,
    PlanChange,
    Refund,
    SubscriptionPlan,
    UserSubscription,
)
from db.models.disputes import Dispute, DisputeEvidenceDraft
from db.models.events import AppSetting, MetricPoint, StripeEvent, WorkerLease
from db.models.fraud import FraudWarning
from db.models.golive import ChecklistItem, MetricsSnapshot, QaResult, QaRun, Signoff
from db.models.metric_rollup import MetricHourly
from db.models.reconcile import ReconcileAction, ReconcileRun

__all__ = [
    "AppSetting",
    "AuditLog",
    "Base",
    "Charge",
    "ChecklistItem",
    "Customer",
    "Dispute",
    "DisputeEvidenceDraft",
    "FraudWarning",
    "Invoice",
    "MetricHourly",
    "MetricPoint",
    "MetricsSnapshot",
    "PlanChange",
    "QaResult",
    "QaRun",
    "ReconcileAction",
    "ReconcileRun",
    "Refund",
    "Signoff",
    "StripeEvent",
    "SubscriptionPlan",
    "UserSubscription",
    "WorkerLease",
]
