"""The first-24h board: the runbook's metrics per hour from a go-live time, its alerts,
and frozen snapshots for sign-off. Every aggregate runs in SQL (grouped by hour)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from db.models.base import utcnow
from db.repositories import metrics as metric_rows
from db.repositories import settings as app_settings
from db.repositories import webhook_events
from db.session import UnitOfWork
from services import audit, metric_rollup
from services import metric_points as m
from services.audit import privileged
from services.config import Settings
from services.observability import capture_alert
from services.runtime import Runtime
from services.webhook_counts import QA_TRIGGER, WEBHOOK_SOURCE

GOLIVE_KEY = "golive_at"
ALERTS_SENT_KEY = "alerts_sent"
BASELINE_DAYS = 7
BOARD_METRICS = m.ALL_METRICS


@dataclass
class Board:
    start: datetime
    end: datetime
    totals: dict[str, int]
    # metric -> [(hour start, count)] with every hour of the window present
    series: dict[str, list[tuple[datetime, int]]]

    @property
    def empty(self) -> bool:
        return not any(self.totals.values())

    def rows(self) -> list[dict[str, Any]]:
        return [{"hour": hour.isoformat(), "metric": name, "count": count}
                for name, points in self.series.items() for hour, count in points]


def board(uow: UnitOfWork, *, start: datetime, end: datetime, settings: Settings | None = None,
          test: bool = False, from_points: bool = False) -> Board:
    """Production figures; test=True gives only QA-matrix / test-clock activity, shown on its own.
    Whole hours come from the hourly rollup (services/metric_rollup.py), the partial hours at
    either end of the window from the points; from_points=True sums the points for all of it
    (the raw aggregate the rollup equals)."""
    # settings is accepted for the agreed interface; the figures need none of it yet
    with uow:
        read = _point_counts if from_points else _rolled_up_counts
        counts = read(uow, start, end, test)
    first_hour = int(start.timestamp()) // 3600 * 3600
    hours = list(range(first_hour, int(end.timestamp()), 3600))
    series = {name: [(datetime.fromtimestamp(h, UTC), counts.get((name, h), 0)) for h in hours]
              for name in BOARD_METRICS}
    totals = {name: sum(c for _h, c in points) for name, points in series.items()}
    return Board(start, end, totals, series)


def _point_counts(uow: UnitOfWork, start: datetime, end: datetime, test: bool) -> dict[tuple[str, int], int]:
    """{(metric, hour start in unix seconds): sum} from metric_points over [start, end)."""
    return metric_rows.point_sums_per_hour(uow, BOARD_METRICS, start=start, end=end, test=test)


def _rolled_up_counts(uow: UnitOfWork, start: datetime, end: datetime, test: bool) -> dict[tuple[str, int], int]:
    """The same figures: whole hours from metric_hourly, partial end hours from the points."""
    first_whole = metric_rollup.hour_of(start)
    if first_whole < start:
        first_whole += metric_rollup.HOUR
    last_whole = metric_rollup.hour_of(end)
    if first_whole >= last_whole:
        return _point_counts(uow, start, end, test)
    counts: dict[tuple[str, int], int] = {}
    for name, hour, total in metric_rows.hourly_sums(uow, names=BOARD_METRICS, start_hour=first_whole,
                                                       end_hour=last_whole, test=test):
        key = (name, hour)
        counts[key] = counts.get(key, 0) + total
    for edge_start, edge_end in ((start, first_whole), (last_whole, end)):
        if edge_start < edge_end:
            for key, total in _point_counts(uow, edge_start, edge_end, test).items():
                counts[key] = counts.get(key, 0) + total
    return counts


# --- go-live time ---------------------------------------------------------------------------------
def get_golive_time(uow: UnitOfWork) -> datetime | None:
    with uow:
        stored = app_settings.value(uow, GOLIVE_KEY)
        return datetime.fromisoformat(stored["at"]) if stored else None


@privileged("metrics.set_golive_time")
def set_golive_time(when: datetime, *, actor: str, settings: Settings, uow: UnitOfWork) -> None:
    if when.tzinfo is None:
        raise ValueError("The go-live time needs a time zone.")
    with uow:
        before = app_settings.value(uow, GOLIVE_KEY).get("at")
        after = when.astimezone(UTC).isoformat()
        app_settings.put(uow, GOLIVE_KEY, {"at": after}, actor=actor)
        audit.record(uow, actor=actor, action="metrics.set_golive_time", target=GOLIVE_KEY, result="ok",
                     details={"before": before, "after": after})
        uow.commit()


# --- alerts -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Alert:
    key: str
    title: str
    detail: str
    value: float
    threshold: float


def _count(uow: UnitOfWork, name: str, start: datetime, end: datetime) -> int:
    return metric_rows.production_total(uow, name, start=start, end=end)


def _failure_share(uow: UnitOfWork, start: datetime, end: datetime) -> float | None:
    failed = _count(uow, m.INVOICE_FAILED, start, end)
    paid = _count(uow, m.INVOICE_PAID, start, end)
    return None if failed + paid == 0 else failed / (failed + paid)


def active_alerts(uow: UnitOfWork, *, settings: Settings, now: datetime | None = None,
                  window: timedelta = timedelta(hours=1)) -> list[Alert]:
    """The runbook's alerts (section 8) plus webhook silence and invalid signatures.
    Each fires at its threshold, never below it."""
    moment = now or utcnow()
    start = moment - window
    alerts: list[Alert] = []
    with uow:
        errors = _count(uow, m.CHANGE_ERROR, start, moment)
        changes = _count(uow, m.SUBSCRIPTION_CHANGE, start, moment) + errors
        if errors and round(errors / changes, 6) >= round(settings.alert_change_error_rate, 6):
            alerts.append(Alert("change_error_rate", "Plan-change errors",
                                f"{errors} of {changes} plan changes failed in the last hour",
                                errors / changes, settings.alert_change_error_rate))
        biggest = metric_rows.largest_reconcile_apply(uow, since=moment - timedelta(hours=24),
                                                       except_trigger=QA_TRIGGER)
        if biggest is not None and biggest > settings.alert_reconcile_applied_max:
            alerts.append(Alert("reconcile_applied_spike", "Reconciliation applied a spike",
                                f"one run applied {biggest} changes (alert above "
                                f"{settings.alert_reconcile_applied_max})",
                                float(biggest), float(settings.alert_reconcile_applied_max)))
        share = _failure_share(uow, moment - timedelta(hours=24), moment)
        golive = app_settings.value(uow, GOLIVE_KEY)
        golive_at = datetime.fromisoformat(golive["at"]) if golive else moment
        baseline = settings.alert_invoice_failure_baseline
        if baseline is None:
            baseline = _failure_share(uow, golive_at - timedelta(days=BASELINE_DAYS), golive_at)
        # Rounded so "at the threshold" is not lost to float error (0.10 + 0.05 != 0.15).
        if share is not None and baseline is not None and \
                round(share, 6) >= round(baseline + settings.alert_invoice_failure_margin, 6):
            alerts.append(Alert("invoice_failure_share", "Invoice failures above baseline",
                                f"{share:.1%} of invoices failed in 24 h vs a baseline of {baseline:.1%} "
                                f"(+{settings.alert_invoice_failure_margin:.0%} allowed)",
                                share, baseline + settings.alert_invoice_failure_margin))
        # Silence is about Stripe's deliveries: a backfill does not hide it.
        last = webhook_events.last_received_at(uow, source=WEBHOOK_SOURCE)
        silence = settings.alert_webhook_silence_minutes
        if last is not None and moment - last >= timedelta(minutes=silence):
            minutes = (moment - last).total_seconds() / 60
            alerts.append(Alert("webhook_silence", "Webhooks are silent",
                                f"no event for {minutes:.0f} minutes (alert at {silence})", minutes, float(silence)))
        invalid = _count(uow, m.WEBHOOK_INVALID_SIGNATURE, moment - timedelta(hours=1), moment)
        limit = settings.alert_invalid_signatures_per_hour
        if limit and invalid >= limit:
            alerts.append(Alert("invalid_signatures", "Invalid webhook signatures",
                                f"{invalid} in the last hour (alert at {limit})", float(invalid), float(limit)))
    alerts += _switch_alerts(uow, settings, moment)
    alerts += _fraud_signal_alerts(uow, settings, moment)
    return alerts


def _fraud_signal_alerts(uow: UnitOfWork, settings: Settings, moment: datetime) -> list[Alert]:
    from services.fraud_signals import signals

    return [Alert(s.key, s.title, s.detail, float(s.value), float(s.threshold))
            for s in signals(uow, settings=settings, now=moment) if s.firing]


def _switch_alerts(uow: UnitOfWork, settings: Settings, moment: datetime) -> list[Alert]:
    from services.switches import TITLES, long_paused

    limit = settings.alert_switch_paused_minutes
    if not limit:
        return []
    alerts = []
    for state in long_paused(uow, after=timedelta(minutes=limit), now=moment):
        minutes = (moment - state.since).total_seconds() / 60 if state.since else 0.0
        alerts.append(Alert(f"switch_paused_{state.name}", f"{TITLES[state.name]} paused",
                            f"paused by {state.by} for {minutes:.0f} minutes (alert after {limit}): {state.reason}",
                            minutes, float(limit)))
    return alerts


def send_alerts(uow: UnitOfWork, alerts: list[Alert], *, now: datetime | None = None) -> int:
    """Send each alert to Sentry at most once per hour (the worker checks far more often)."""
    moment = now or utcnow()
    hour = moment.strftime("%Y-%m-%dT%H")
    sent = 0
    with uow:
        already = app_settings.value(uow, ALERTS_SENT_KEY)
        for alert in alerts:
            if already.get(alert.key) == hour:
                continue
            capture_alert(f"{alert.title}: {alert.detail}", {"alert": alert.key, "threshold": str(alert.threshold)})
            already[alert.key] = hour
            sent += 1
        app_settings.put(uow, ALERTS_SENT_KEY, already)
        uow.commit()
    return sent


def check_alerts(runtime: Runtime) -> int:
    """The worker's alert tick: evaluate the alerts now and send the firing ones (each once per hour).
    A background loop does this, so the First 24 hours page only reads."""
    moment = runtime.clock()
    return send_alerts(runtime.uow(), active_alerts(runtime.uow(), settings=runtime.settings, now=moment), now=moment)


# --- snapshots ------------------------------------------------------------------------------------------
def _dunning_figures(summary: Any) -> dict[str, Any]:
    """The dunning summary as frozen: minor units per currency, and the same amounts as a person reads them."""
    return {**asdict(summary), "open_amount_shown": summary.open_amount_text}


def _snapshot_figures(uow: UnitOfWork, start: datetime, end: datetime, settings: Settings) -> dict[str, Any]:
    frozen = board(uow, start=start, end=end)
    from services import launch_figures
    from services.dunning import recovery_summary

    return {
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "totals": frozen.totals,
        "series": frozen.rows(),
        "alerts": [asdict(a) for a in active_alerts(uow, settings=settings, now=end)],
        "dunning": _dunning_figures(recovery_summary(uow, since=start, until=end)),
        "launch": launch_figures.frozen(uow, start=start, end=end),  # Numzy §13 (services/launch_figures.py)
    }


def _freeze(uow: UnitOfWork, actor: str, start: datetime, end: datetime, settings: Settings) -> dict[str, Any]:
    figures = _snapshot_figures(uow, start, end, settings)
    with uow:
        created_at = utcnow()
        # The audit chain's head at this moment: deleting later-anchored rows then shows.
        figures["audit_anchor"] = audit.chain_head(uow, at=created_at)
        canonical = json.dumps(figures, sort_keys=True, separators=(",", ":"), default=str)
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        snapshot_id = metric_rows.add_snapshot(uow, created_at=created_at, created_by=actor, window_start=start,
                                               window_end=end, figures=figures, content_sha256=digest)
        audit.record(uow, actor=actor, action="metrics.snapshot", target=f"snapshot:{snapshot_id}", result="ok",
                     details={"sha256": digest})
        uow.commit()
        return {"id": snapshot_id, "window": figures["window"], "sha256": digest, "figures": figures}


def snapshot_window(uow: UnitOfWork, hours: int, start: datetime | None, now: datetime | None = None) -> tuple[
        datetime, datetime]:
    moment = now or utcnow()
    begin = start or get_golive_time(uow) or moment - timedelta(hours=hours)
    return begin, min(moment, begin + timedelta(hours=hours))


def take_snapshot(runtime: Runtime, *, actor: str, hours: int = 24, start: datetime | None = None) -> dict[str, Any]:
    """`billing-ops snapshot` and sign-off: freeze the board for [go-live, go-live + hours)."""
    begin, end = snapshot_window(runtime.uow(), hours, start)
    return _freeze(runtime.uow(), actor, begin, end, runtime.settings)


@privileged("metrics.snapshot")
def create_snapshot(*, hours: int = 24, actor: str, settings: Settings, uow: UnitOfWork) -> dict[str, Any]:
    begin, end = snapshot_window(uow, hours, None)
    return _freeze(uow, actor, begin, end, settings)


def verify_snapshot(uow: UnitOfWork, snapshot_id: int) -> bool:
    with uow:
        row = metric_rows.snapshot(uow, snapshot_id)
        if row is None:
            return False
        canonical = json.dumps(row.figures, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest() == row.content_sha256


@dataclass
class SnapshotSummary:
    id: int
    created_at: datetime
    created_by: str | None
    window_start: datetime
    window_end: datetime
    sha256: str
    totals: dict[str, int] = field(default_factory=dict)


def list_snapshots(uow: UnitOfWork, limit: int = 20) -> list[SnapshotSummary]:
    with uow:
        rows = metric_rows.newest_snapshots(uow, limit=limit)
        return [SnapshotSummary(r.id, r.created_at, r.created_by, r.window_start, r.window_end, r.content_sha256,
                                dict(r.figures.get("totals", {}))) for r in rows]

