"""Two-person launch sign-off: an engineering lead and a product owner.

A signature is accepted only when, at that moment, the preflight has no
blocking failure and every QA case's latest result for the running code
version passed; the signer must be named for the role and must not have
signed this launch already. The launch must also be ready as a person would
judge it: no pre-launch checklist item open, no alert firing, the go-live time
set. Those three (never a preflight or QA failure) can be overridden by an
engineering lead with a written reason, which is audited and frozen into the
record; the product owner's signature is then accepted for exactly the
reasons the override named. Each signature freezes what the signer saw: the
preflight, the QA results, the readiness (and any override) and a metrics snapshot. A completed record is never
edited; a later blocking failure is shown beside it, not written into it.
Every attempt is audited, refusals included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.models import Signoff
from db.models.base import utcnow
from db.repositories import signoffs as signoff_rows
from db.session import UnitOfWork
from services.audit import chain_head as audit_chain_head
from services.audit import privileged, record
from services.auth import normalise_email
from services.config import Settings
from services.errors import ConsoleError
from services.money import format_totals
from services.runtime import Runtime
from services.smoke_test import frozen_for_signoff as frozen_smoke_test

ROLES = {"eng_lead": "Engineering lead", "product_owner": "Product owner"}
ROLE_SETTINGS = {"eng_lead": "SIGNOFF_ENG_LEADS", "product_owner": "SIGNOFF_PRODUCT_OWNERS"}
SNAPSHOT_HOURS = 24
MIN_OVERRIDE_REASON_CHARS = 20
MAX_OVERRIDE_REASON_CHARS = 2000


@dataclass(frozen=True)
class ReadinessReason:
    """One reason the launch is not ready; `key` is stable so an override can name what it covers."""

    key: str
    text: str


def readiness_reasons(runtime: Runtime) -> list[ReadinessReason]:
    """What a person must fix (or an eng lead override) before signing: open pre-launch checklist
    items, alerts firing now, an unset go-live time."""
    from services.checklist import PRE_LAUNCH_SECTIONS, SEED_ITEMS, list_items
    from services.metrics import active_alerts, get_golive_time

    reasons: list[ReadinessReason] = []
    # A read only (the page shows it): an item not seeded yet counts as open, as in the preflight's check.
    stored = {item["key"]: item for item in list_items(runtime.uow())}
    open_items = [stored.get(seed.key) or {"key": seed.key, "title": seed.title, "status": "open"}
                  for seed in SEED_ITEMS if seed.section in PRE_LAUNCH_SECTIONS]
    reasons += [ReadinessReason(f"checklist:{i['key']}", f"Checklist item open: {i['title']}")
                for i in open_items if i["status"] == "open"]
    for alert in active_alerts(runtime.uow(), settings=runtime.settings):
        reasons.append(ReadinessReason(f"alert:{alert.key}", f"Alert firing: {alert.title} ({alert.detail})"))
    if get_golive_time(runtime.uow()) is None:
        reasons.append(ReadinessReason("golive_time", "The go-live time is not set (First 24 hours page)."))
    return reasons


def launch_override(uow: UnitOfWork, *, version: str) -> dict[str, Any] | None:
    """The eng lead's override on this version's launch, if one was signed."""
    with uow:
        return _override_on_record(_signatures(uow, launch_key_for(version)))


def _override_on_record(signatures: list[Signoff]) -> dict[str, Any] | None:
    for signature in signatures:
        override = ((signature.preflight or {}).get("readiness") or {}).get("override")
        if signature.role == "eng_lead" and isinstance(override, dict):
            return override
    return None


class SignoffRefused(ConsoleError):
    """A signature was refused (audited)."""


def launch_key_for(version: str) -> str:
    """One launch record per code version: a new build needs fresh QA and fresh signatures."""
    return f"go-live@{version}"


def signers_for(role: str, settings: Settings) -> list[str]:
    return list(settings.signoff_eng_leads if role == "eng_lead" else settings.signoff_product_owners)


def take_metrics_snapshot(runtime: Runtime, *, actor: str) -> dict[str, Any]:
    """The first-24h metrics snapshot frozen with the signature (services.metrics, issue 9)."""
    from services.metrics import take_snapshot

    snapshot: dict[str, Any] = take_snapshot(runtime, actor=actor, hours=SNAPSHOT_HOURS)
    return snapshot


def signature_row(row: Signoff) -> dict[str, Any]:
    return {
        "id": row.id, "launch_key": row.launch_key, "role": row.role, "signer": row.signer,
        "signed_at": row.signed_at, "code_version": row.code_version, "preflight": row.preflight,
        "qa_results": row.qa_results, "snapshot_id": row.snapshot_id, "metrics": row.metrics, "note": row.note,
    }


def _signatures(uow: UnitOfWork, launch_key: str) -> list[Signoff]:
    return signoff_rows.of_launch(uow, launch_key)


def _is_complete(signatures: list[Signoff]) -> bool:
    return {s.role for s in signatures} >= set(ROLES)


def _preflight_problems(runtime: Runtime) -> tuple[list[dict[str, Any]], list[str]]:
    from services.preflight import blocking_failures, run_preflight

    results = run_preflight(runtime)
    return [r.to_dict() for r in results], [f"{r.id}: {r.message}" for r in blocking_failures(results)]


def _refusal(uow: UnitOfWork, *, actor: str, role: str, launch_key: str, reason: str) -> SignoffRefused:
    with uow:
        record(uow, actor=actor, action="golive.signoff", result="refused", target=launch_key,
               idempotency_key=f"signoff:{launch_key}:{role}", details={"role": role}, error=reason)
        uow.commit()
    return SignoffRefused(reason)


@privileged("golive.signoff")
def sign(
    role: str, *, actor: str, settings: Settings, uow: UnitOfWork, runtime: Runtime, note: str | None = None,
    override_reason: str | None = None,
) -> dict[str, Any]:
    """The sign-off page's button: record one signature or raise SignoffRefused (audited either
    way). Admins only; the role lists decide who may sign what."""
    from services.qa_matrix import code_version, latest_results, matrix_problems

    signer = normalise_email(actor) or str(actor)
    version = code_version()
    launch_key = launch_key_for(version)
    if role not in ROLES:
        raise _refusal(uow, actor=signer, role=role, launch_key=launch_key,
                       reason=f"Unknown role {role!r}: sign as eng_lead or product_owner.")
    if signer not in signers_for(role, settings):
        raise _refusal(uow, actor=signer, role=role, launch_key=launch_key,
                       reason=f"{signer} is not listed in {ROLE_SETTINGS[role]}, so cannot sign as "
                              f"{ROLES[role].lower()}.")
    with uow:
        existing = _signatures(uow, launch_key)
        by_role = {s.role: s.signer for s in existing}
    if _is_complete_roles(by_role):
        raise _refusal(uow, actor=signer, role=role, launch_key=launch_key,
                       reason="This launch is already signed off by both roles; the record is frozen.")
    if role in by_role:
        raise _refusal(uow, actor=signer, role=role, launch_key=launch_key,
                       reason=f"{ROLES[role]} already signed this launch ({by_role[role]}).")
    if signer in by_role.values():
        raise _refusal(uow, actor=signer, role=role, launch_key=launch_key,
                       reason="You already signed this launch in the other role; sign-off needs two different "
                              "people.")
    preflight, blocking = _preflight_problems(runtime)
    if blocking:
        raise _refusal(uow, actor=signer, role=role, launch_key=launch_key,
                       reason="The preflight has blocking failures: " + "; ".join(blocking))
    problems = matrix_problems(runtime.uow(), version=version)
    if problems:
        raise _refusal(uow, actor=signer, role=role, launch_key=launch_key,
                       reason="The QA matrix is not green for this code version: " + "; ".join(problems))
    reasons = readiness_reasons(runtime)
    readiness: dict[str, Any] = {"reasons": [{"key": r.key, "text": r.text} for r in reasons]}
    if reasons:
        on_record = _override_on_record(existing)
        covered = set(on_record.get("covers", [])) if on_record else set()
        uncovered = [r for r in reasons if r.key not in covered]
        written = (override_reason or "").strip()
        if not uncovered:
            readiness["covered_by_override_of"] = on_record["by"] if on_record else None
        elif written and role != "eng_lead":
            raise _refusal(uow, actor=signer, role=role, launch_key=launch_key,
                           reason="Only an engineering lead can override the readiness checks.")
        elif written and len(written) < MIN_OVERRIDE_REASON_CHARS:
            raise _refusal(uow, actor=signer, role=role, launch_key=launch_key,
                           reason=f"An override needs a written reason of at least {MIN_OVERRIDE_REASON_CHARS} "
                                  "characters saying why launching now is right.")
        elif written:
            readiness["override"] = {"by": signer, "reason": written[:MAX_OVERRIDE_REASON_CHARS],
                                     "at": utcnow().isoformat(timespec="seconds"),
                                     "covers": [r.key for r in reasons]}
        else:
            how = (" An engineering lead can override with a written reason." if role == "eng_lead" else
                   " The engineering lead can override them with a written reason when signing first.")
            raise _refusal(uow, actor=signer, role=role, launch_key=launch_key,
                           reason="The launch is not ready: " + "; ".join(r.text for r in uncovered) + "." + how)
    qa = latest_results(runtime.uow(), version=version)
    snapshot = take_metrics_snapshot(runtime, actor=signer)
    smoke = _json_safe(frozen_smoke_test(runtime.uow()))
    with uow:
        # Re-check under the write transaction: two people clicking at once must not both take a role.
        current = {s.role: s.signer for s in _signatures(uow, launch_key)}
        if role in current or signer in current.values():
            record(uow, actor=signer, action="golive.signoff", result="refused", target=launch_key,
                   idempotency_key=f"signoff:{launch_key}:{role}", details={"role": role},
                   error="someone signed at the same moment")
            uow.commit()
            raise SignoffRefused("Someone signed this launch at the same moment; reload and check the record.")
        snapshot_id = snapshot.get("id") if isinstance(snapshot.get("id"), int) else None
        signed_at = utcnow()
        row = Signoff(launch_key=launch_key, role=role, signer=signer, code_version=version, signed_at=signed_at,
                      # The audit chain's head, frozen with the signature (see audit.chain_head).
                      preflight={"results": preflight, "readiness": readiness,
                                 "audit_anchor": audit_chain_head(uow, at=signed_at),
                                 # The latest guided smoke test as it stood (issue 24 §3).
                                 "smoke_test": smoke},
                      qa_results={"code_version": version,
                                  "cases": {case_id: _frozen_result(r) for case_id, r in qa.items()}},
                      snapshot_id=snapshot_id, metrics=_json_safe(snapshot),
                      note=(note or "").strip()[:2000] or None)
        if not signoff_rows.insert(uow, row):  # the (launch, role) constraint: another signature won the race
            reason = f"{ROLES[role]} signed this launch at the same moment; reload the record."
            record(uow, actor=signer, action="golive.signoff", result="refused", target=launch_key,
                   idempotency_key=f"signoff:{launch_key}:{role}", details={"role": role}, error=reason)
            uow.commit()
            raise SignoffRefused(reason)
        record(uow, actor=signer, action="golive.signoff", result="ok", target=launch_key,
               idempotency_key=f"signoff:{launch_key}:{role}",
               details={"role": role, "signoff_id": row.id, "snapshot_id": snapshot_id,
                        "complete": _is_complete_roles({**current, role: signer}),
                        "not_ready": [r.key for r in reasons],
                        "override_reason": (readiness.get("override") or {}).get("reason")})
        uow.commit()
        return signature_row(row)


def _is_complete_roles(by_role: dict[str, str]) -> bool:
    return set(by_role) >= set(ROLES)


def _json_safe(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def _frozen_result(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "run_id", "status", "manual", "failed_expectation", "notes", "actor", "duration_ms", "at")
    return _json_safe({k: result[k] for k in keep})  # type: ignore[no-any-return]


@dataclass(frozen=True)
class LaunchRecord:
    launch_key: str
    code_version: str | None
    complete: bool
    signatures: list[dict[str, Any]]


def launch_record(uow: UnitOfWork, *, version: str) -> LaunchRecord | None:
    """The completed launch record if there is one (it stays shown), else this version's in-progress one."""
    with uow:
        rows = signoff_rows.every(uow)
    by_launch: dict[str, list[Signoff]] = {}
    for row in rows:
        by_launch.setdefault(row.launch_key, []).append(row)
    complete = [key for key, signatures in by_launch.items() if _is_complete(signatures)]
    key = complete[0] if complete else launch_key_for(version)
    signatures = by_launch.get(key, [])
    if not signatures:
        return None
    return LaunchRecord(key, signatures[0].code_version, _is_complete(signatures),
                        [signature_row(s) for s in signatures])


def summary_markdown(launch: LaunchRecord) -> str:
    """A printable summary of the frozen record."""
    lines = [f"# Go-live sign-off — {launch.launch_key}", "",
             f"Status: {'SIGNED OFF' if launch.complete else 'awaiting the second signature'}",
             f"Code version: {launch.code_version}", "", "## Signatures", ""]
    for s in launch.signatures:
        lines.append(f"- {ROLES.get(s['role'], s['role'])}: {s['signer']} at {s['signed_at']}"
                     + (f" — {s['note']}" if s["note"] else ""))
    first = launch.signatures[0]
    lines += ["", "## Readiness (frozen at each signature)", ""]
    for s in launch.signatures:
        readiness = (s["preflight"] or {}).get("readiness") or {}
        reasons = [r["text"] for r in readiness.get("reasons", [])]
        lines.append(f"- {s['signer']}: " + ("ready" if not reasons else "not ready: " + "; ".join(reasons)))
        override = readiness.get("override")
        if override:
            lines.append(f"  - OVERRIDDEN by {override['by']} at {override['at']}: {override['reason']}")
        elif readiness.get("covered_by_override_of"):
            lines.append(f"  - covered by the override of {readiness['covered_by_override_of']}")
    lines += ["", "## Preflight (frozen at the first signature)", "", "| Check | Severity | Result | Message |",
              "|---|---|---|---|"]
    for check in first["preflight"].get("results", []):
        result = "pass" if check["passed"] else "FAIL"
        lines.append(f"| {check['id']} | {check['severity']} | {result} | {check['message']} |")
    lines += ["", "## Live smoke test (frozen at the first signature)", ""]
    smoke = first["preflight"].get("smoke_test")
    if not smoke:
        lines.append("- none run")
    else:
        lines.append(f"- #{smoke['id']} in {smoke['mode']} mode: {'PASSED' if smoke['passed'] else smoke['status']}"
                     f", {smoke.get('amount_text') or '-'}, by {smoke['started_by']}, finished {smoke['finished_at']}")
        for step in smoke.get("steps") or []:
            lines.append(f"  - {step['title']}: {'pass' if step['passed'] else 'FAIL'} at {step['at']} — "
                         f"{step['detail']}")
    lines += ["", "## QA matrix", "", "| Case | Result | Run | Duration |", "|---|---|---|---|"]
    for case_id, result in (first["qa_results"].get("cases") or {}).items():
        duration = f"{(result.get('duration_ms') or 0) / 1000:.1f} s" if result.get("duration_ms") else "manual"
        lines.append(f"| {case_id} | {result['status']} | {result.get('run_id') or '-'} | {duration} |")
    lines += ["", "## Metrics snapshot", ""]
    for s in launch.signatures:
        metrics = s["metrics"] or {}
        if "unavailable" in metrics:
            lines.append(f"- {s['signer']}: unavailable ({metrics['unavailable']})")
        else:
            lines.append(f"- {s['signer']}: snapshot {metrics.get('id')} window {metrics.get('window')} "
                         f"sha256 {metrics.get('sha256')}")
            for name, value in sorted((metrics.get("figures") or {}).items()):
                if isinstance(value, int | float | str):
                    lines.append(f"  - {name}: {value}")
            dunning = (metrics.get("figures") or {}).get("dunning") or {}
            if dunning:
                owed = dunning.get("open_amount_shown") or format_totals(dunning.get("open_amount") or {},
                                                                         empty="nothing")
                lines.append(f"  - dunning still open: {dunning.get('open_cases', 0)} case(s) owing {owed}")
    return "\n".join(lines) + "\n"
