"""The guided webhook signing-secret roll, following the go-live runbook (§3: "Capture new
secret; append to STRIPE_WEBHOOK_SECRETS (keep old for rotation overlap)").

Stripe rolls an endpoint's secret only in the Dashboard (Webhooks → the endpoint → Roll
secret; the pinned SDK's WebhookEndpoint has no roll call), where you choose how long the old
secret keeps signing beside the new one; until then each delivery carries one `v1` signature
per active secret. The receiver accepts any configured secret (STRIPE_WEBHOOK_SECRETS), so:

1. **add**: roll at Stripe, append the new secret to STRIPE_WEBHOOK_SECRETS on every receiver
   and the console (the old one stays), restart them. Checked: the console's settings hold a
   secret that was not configured when the roll started, and still hold the old one.
2. **verify**: a webhook delivery received after step 1 was verified with the new secret (the
   receiver records which secrets verified each event; "send test event" makes one at once).
3. **retire**: remove the old secret from STRIPE_WEBHOOK_SECRETS everywhere and restart (and
   let it expire at Stripe). Checked: the console's settings no longer hold it, the new one is
   still there.

The state lives in one `app_settings` row, so any console replica shows the same step; every
step (done or refused) is audited. Secrets are named by fingerprint only (webhook_secrets.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.models.base import utcnow
from db.repositories import settings as app_settings
from db.repositories import webhook_events
from db.session import UnitOfWork
from services import audit, webhook_secrets
from services.audit import privileged
from services.config import Settings
from services.errors import ConsoleError

SETTING_KEY = "webhook_secret_roll"
STEPS = ("add", "verify", "retire")
STEP_TITLES = {
    "add": "Add the new secret",
    "verify": "Verify a delivery with it",
    "retire": "Retire the old secret",
}


class SecretRollError(ConsoleError):
    """A roll step is not done yet or was refused; the message says what is missing."""


@dataclass(frozen=True)
class RollState:
    active: bool
    started_by: str | None = None
    started_at: str | None = None
    old: tuple[str, ...] = ()
    new: str | None = None
    done: dict[str, dict[str, Any]] | None = None
    finished_at: str | None = None
    cancelled: bool = False

    @property
    def current_step(self) -> str | None:
        """The first step not done yet (None when no roll is running or all are done)."""
        if not self.active:
            return None
        return next((step for step in STEPS if step not in (self.done or {})), None)

    def step_state(self, step: str) -> str:
        """done | current | waiting."""
        if step in (self.done or {}):
            return "done"
        return "current" if step == self.current_step else "waiting"


def _load(uow: UnitOfWork) -> dict[str, Any]:
    return app_settings.value(uow, SETTING_KEY)


def _state(value: dict[str, Any]) -> RollState:
    if not value:
        return RollState(active=False)
    return RollState(active=bool(value.get("active")), started_by=value.get("started_by"),
                     started_at=value.get("started_at"), old=tuple(value.get("old") or ()), new=value.get("new"),
                     done=dict(value.get("done") or {}), finished_at=value.get("finished_at"),
                     cancelled=bool(value.get("cancelled")))


def roll_state(uow: UnitOfWork) -> RollState:
    with uow:
        return _state(_load(uow))


def _save(uow: UnitOfWork, value: dict[str, Any], *, actor: str, action: str, target: str = SETTING_KEY,
          details: dict[str, Any]) -> RollState:
    """Store the new state, audit the step as done, commit: the end of every step."""
    app_settings.put(uow, SETTING_KEY, value, actor=actor)
    audit.record(uow, actor=actor, action=action, result="ok", target=target, details=details)
    uow.commit()
    return _state(value)


def _refuse(uow: UnitOfWork, actor: str, action: str, message: str, details: dict[str, Any] | None = None) -> None:
    audit.record(uow, actor=actor, action=action, result="refused", target=SETTING_KEY, error=message,
                 details=details)
    uow.commit()
    raise SecretRollError(message)


def configured(settings: Settings) -> list[str]:
    return webhook_secrets.fingerprints(settings.webhook_secret_values)


@privileged("webhooks.secret_roll.start")
def start_roll(retiring: Sequence[str] | None = None, *, actor: str, settings: Settings,
               uow: UnitOfWork) -> RollState:
    """Record which configured keys are being rolled (`retiring`, fingerprints; all of them by
    default: with one endpoint there is one) and every key configured now, so a new one shows."""
    action = "webhooks.secret_roll.start"
    with uow:
        value = _load(uow)
        if value.get("active"):
            _refuse(uow, actor, action, "A secret roll is already in progress; finish or cancel it first.")
        start_keys = configured(settings)
        if not start_keys:
            _refuse(uow, actor, action, "No webhook signing secret is configured: set STRIPE_WEBHOOK_SECRETS first.")
        old = list(dict.fromkeys(retiring)) if retiring else start_keys
        unknown = [fp for fp in old if fp not in start_keys]
        if unknown:
            _refuse(uow, actor, action, "Choose keys that are configured now: " + ", ".join(unknown) + " is not.")
        now = utcnow().isoformat(timespec="seconds")
        value = {"active": True, "started_by": actor, "started_at": now, "old": old, "start_keys": start_keys,
                 "new": None, "done": {}}
        return _save(uow, value, actor=actor, action=action, details={"old": old})


def _running(uow: UnitOfWork, actor: str, action: str, step: str) -> dict[str, Any]:
    value = _load(uow)
    state = _state(value)
    if not state.active:
        _refuse(uow, actor, action, "No secret roll is in progress; start one first.")
    if state.current_step != step:
        _refuse(uow, actor, action, f"Do the steps in order: the current step is "
                                    f"'{STEP_TITLES.get(state.current_step or '', 'none')}'.")
    return value


def _mark(value: dict[str, Any], step: str, actor: str, **facts: Any) -> dict[str, Any]:
    done = dict(value.get("done") or {})
    done[step] = {"by": actor, "at": utcnow().isoformat(timespec="seconds"), **facts}
    return {**value, "done": done}


@privileged("webhooks.secret_roll.add")
def confirm_added(*, actor: str, settings: Settings, uow: UnitOfWork) -> RollState:
    """Step 1 is done when the settings hold a secret the roll did not start with, beside the old ones."""
    action = "webhooks.secret_roll.add"
    with uow:
        value = _running(uow, actor, action, "add")
        now_configured = configured(settings)
        added = [fp for fp in now_configured if fp not in value.get("start_keys", value["old"])]
        if not added:
            _refuse(uow, actor, action, "STRIPE_WEBHOOK_SECRETS still holds only the old secret(s). Append the "
                                        "new one (comma-separated, keep the old), then restart the receivers "
                                        "and the console.", {"configured": now_configured})
        if len(added) > 1:
            _refuse(uow, actor, action, "More than one new secret is configured; keep exactly one new secret.",
                    {"added": added})
        if not all(fp in now_configured for fp in value["old"]):
            _refuse(uow, actor, action, "The old secret was removed too early: deliveries still signed only with "
                                        "it would be refused. Put it back until step 3.", {"added": added})
        value = _mark({**value, "new": added[0]}, "add", actor, new=added[0])
        return _save(uow, value, actor=actor, action=action, details={"new": added[0]})


def verifying_delivery(uow: UnitOfWork, state: RollState) -> tuple[str, datetime] | None:
    """The first webhook delivery received since step 1 that the new secret verified."""
    added = (state.done or {}).get("add")
    if not state.new or not added:
        return None
    since = datetime.fromisoformat(added["at"])
    with uow:
        rows = webhook_events.deliveries_signed_with(uow, state.new, since=since)
    for event_id, received_at, signed_with in rows:
        if state.new in (signed_with or "").split(","):
            return str(event_id), received_at
    return None


@privileged("webhooks.secret_roll.verify")
def confirm_verified(*, actor: str, settings: Settings, uow: UnitOfWork) -> RollState:
    """Step 2 is done when a delivery since step 1 was verified with the new secret."""
    action = "webhooks.secret_roll.verify"
    with uow:
        _running(uow, actor, action, "verify")
    state = roll_state(uow)
    found = verifying_delivery(uow, state)
    with uow:
        value = _running(uow, actor, action, "verify")
        if found is None:
            _refuse(uow, actor, action, f"No delivery has been verified with the new secret (key {state.new}) "
                                        "yet. Send a test event or wait for the next event; if deliveries keep "
                                        "arriving with the old key only, the secret was not rolled at Stripe "
                                        "(or a receiver was not restarted).")
        assert found is not None
        value = _mark(value, "verify", actor, event=found[0], received_at=found[1].isoformat(timespec="seconds"))
        return _save(uow, value, actor=actor, action=action, target=found[0], details={"new": state.new})


@privileged("webhooks.secret_roll.retire")
def confirm_retired(*, actor: str, settings: Settings, uow: UnitOfWork) -> RollState:
    """Step 3 (and the roll) is done when the old secrets are gone from the settings and the new one stays."""
    action = "webhooks.secret_roll.retire"
    now_configured = configured(settings)
    with uow:
        value = _running(uow, actor, action, "retire")
        still = [fp for fp in value["old"] if fp in now_configured]
        if still:
            _refuse(uow, actor, action, "STRIPE_WEBHOOK_SECRETS still holds the old secret ("
                                        + ", ".join(f"key {fp}" for fp in still)
                                        + "). Remove it everywhere and restart the receivers and the console.")
        if value.get("new") not in now_configured:
            _refuse(uow, actor, action, "The new secret is no longer configured: put it back before retiring "
                                        "the old one, or every delivery will be refused.")
        now = utcnow().isoformat(timespec="seconds")
        value = {**_mark(value, "retire", actor, retired=value["old"]), "active": False, "finished_at": now}
        return _save(uow, value, actor=actor, action=action, details={"retired": value["old"], "new": value.get("new")})


@privileged("webhooks.secret_roll.cancel")
def cancel_roll(reason: str, *, actor: str, settings: Settings, uow: UnitOfWork) -> RollState:
    action = "webhooks.secret_roll.cancel"
    with uow:
        value = _load(uow)
        if not value.get("active"):
            _refuse(uow, actor, action, "No secret roll is in progress.")
        text = " ".join((reason or "").split())
        if len(text) < 3:
            _refuse(uow, actor, action, "Say why the roll is cancelled (at least 3 characters).")
        value = {**value, "active": False, "cancelled": True, "cancel_reason": text[:500],
                 "finished_at": utcnow().isoformat(timespec="seconds")}
        return _save(uow, value, actor=actor, action=action, details={"reason": text})
