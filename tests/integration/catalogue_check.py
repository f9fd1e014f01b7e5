"""The catalogue contract check: every object in every emulator response, validated
against the field catalogue derived from the stripe SDK (emulator/objects/catalogue.py)."""

from __future__ import annotations

import json
import threading
from typing import Any

from emulator.objects.catalogue import Report, validate


class ResponseAudit:
    """Observes the emulator's /v1 responses and validates every object in them."""

    def __init__(self) -> None:
        self.report = Report()
        self.responses = 0
        self.lock = threading.Lock()

    def __call__(self, method: str, path: str, status: int, body: bytes) -> None:
        if status >= 300 or not body:
            return
        try:
            payload = json.loads(body)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        report = validate(payload)
        with self.lock:
            self.responses += 1
            self.report.add(report)

    def summary(self) -> str:
        report = self.report
        lines = [f"emulator field catalogue: {report.percent:.2f} % of {report.fields} defined fields present and "
                 f"correctly typed over {report.objects} objects in {self.responses} responses"]
        worst = sorted(((100.0 * g / t if t else 100.0), name, g, t) for name, (g, t) in report.by_object.items())
        lines.extend(f"  {name}: {pct:.1f} % ({g}/{t})" for pct, name, g, t in worst[:12])
        kinds: dict[str, int] = {}
        for problem in report.problems:
            kinds[problem.split(" ", 1)[0]] = kinds.get(problem.split(" ", 1)[0], 0) + 1
        lines.append(f"  problems by kind: {kinds}")
        return "\n".join(lines)

    def serious(self) -> list[str]:
        """Wrong types, wrong enums, nulls where Stripe never sends null, fields Stripe doesn't define."""
        return [p for p in self.report.problems if p.split(" ", 1)[0] in ("type", "enum", "null", "unknown")]


SESSION_AUDIT = ResponseAudit()


def attach(server: Any, audit: ResponseAudit) -> None:
    if audit not in server.response_observers:
        server.response_observers.append(audit)


def detach(server: Any, audit: ResponseAudit) -> None:
    if audit in server.response_observers:
        server.response_observers.remove(audit)


__all__ = ["SESSION_AUDIT", "ResponseAudit", "attach", "detach"]
