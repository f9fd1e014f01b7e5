"""A preflight check's result (id, severity, passed, message, fix) and the report built from
the results: blocking failures, PASS/FAIL/WARN, the CLI's text. Messages never hold a secret:
a key is shown as its mode prefix only (`key_hint`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["blocking", "warning"]

# A key's mode prefix ("sk_test_"), the only part of a key that may be shown.
KEY_PREFIX_LENGTH = 8


@dataclass(frozen=True)
class CheckResult:
    id: str
    severity: Severity
    passed: bool
    message: str
    fix: str = ""

    @property
    def blocking_failure(self) -> bool:
        return self.severity == "blocking" and not self.passed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_hint(key: str | None) -> str:
    """What may be shown of a secret key: its mode prefix, never the rest."""
    if not key:
        return "(none)"
    return key[:KEY_PREFIX_LENGTH] + "…"


def passed_check(check_id: str, message: str, severity: Severity = "blocking") -> CheckResult:
    return CheckResult(check_id, severity, True, message, "")


def failed_check(check_id: str, message: str, fix: str, severity: Severity = "blocking") -> CheckResult:
    return CheckResult(check_id, severity, False, message, fix)


def has_blocking_failure(results: list[CheckResult]) -> bool:
    return any(result.blocking_failure for result in results)


def blocking_failures(results: list[CheckResult]) -> list[CheckResult]:
    return [result for result in results if result.blocking_failure]


def status_word(result: CheckResult) -> str:
    if result.passed:
        return "PASS"
    return "FAIL" if result.severity == "blocking" else "WARN"


def format_report(results: list[CheckResult]) -> str:
    lines = []
    for result in results:
        lines.append(f"{status_word(result):4}  {result.id:22} {result.message}")
        if not result.passed and result.fix:
            lines.append(f"{'':28}fix: {result.fix}")
    failures = blocking_failures(results)
    warnings = [r for r in results if not r.passed and r.severity == "warning"]
    if failures:
        lines.append(f"\nNOT READY: {len(failures)} blocking failure(s) "
                     f"({', '.join(r.id for r in failures)}), {len(warnings)} warning(s).")
    else:
        lines.append(f"\nREADY: no blocking failures, {len(warnings)} warning(s).")
    return "\n".join(lines)
