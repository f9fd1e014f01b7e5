"""The contract suite's two targets (tests/integration/stripe_target.py): which key the real
half takes, how its client waits for a test clock to finish advancing, and that every
contract test which drives the emulator's own helpers says so with `emulator_only`."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import stripe

from tests.integration import stripe_target
from tests.integration.stripe_target import REAL_KEY_ENV, ClockSettlingClient, StripeTarget, real_stripe_key

HERE = Path(__file__).resolve().parent
EMULATOR_HELPERS = {"admin", "requests", "clear_requests", "flush_webhooks"}


def test_the_real_half_needs_a_test_mode_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REAL_KEY_ENV, raising=False)
    key, why_not = real_stripe_key()
    assert key is None and why_not.startswith(f"{REAL_KEY_ENV} not set")
    monkeypatch.setenv(REAL_KEY_ENV, "sk_live_" + "x" * 24)
    key, why_not = real_stripe_key()
    assert key is None and "not a test-mode key" in why_not
    monkeypatch.setenv(REAL_KEY_ENV, "sk_test_" + "x" * 24)
    assert real_stripe_key() == ("sk_test_" + "x" * 24, "")
    real = StripeTarget(stripe_target.REAL_STRIPE, api_key="sk_test_" + "x" * 24).client("unused")
    assert isinstance(real, stripe.StripeClient)


class _AdvancingStripe(stripe.HTTPClient):
    """Stands in for Stripe's wire in this pure unit test: an advance answers `advancing`, and
    the clock reads `advancing` twice more before it is `ready`."""

    name = "advancing-stripe"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.reads_until_ready = 2

    def request(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, *,
                _usage: list[str] | None = None) -> tuple[str, int, Mapping[str, str]]:
        self.calls.append((method, url))
        status = "advancing"
        if method == "get":
            self.reads_until_ready -= 1
            status = "ready" if self.reads_until_ready < 0 else "advancing"
        body = {"id": "clock_1", "object": "test_helpers.test_clock", "status": status, "frozen_time": 1_800_086_400}
        return json.dumps(body), 200, {"request-id": f"req_{len(self.calls)}"}

    def close(self) -> None:
        pass


def test_a_clock_advance_answers_once_the_clock_is_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe_target, "CLOCK_POLL_SECONDS", 0.0)
    wire = _AdvancingStripe()
    client = stripe.StripeClient("sk_test_unit", http_client=ClockSettlingClient(wire), max_network_retries=0)
    advanced = client.v1.test_helpers.test_clocks.advance("clock_1", {"frozen_time": 1_800_086_400})
    assert advanced.status == "ready"
    assert [method for method, _ in wire.calls] == ["post", "get", "get", "get"]
    assert wire.calls[1][1].endswith("/v1/test_helpers/test_clocks/clock_1")
    created = client.v1.customers.create({"email": "a@example.io"})  # anything else passes straight through
    assert created.to_dict()["status"] == "advancing" and wire.calls[-1][0] == "post"


def _marked_emulator_only(node: ast.FunctionDef, module: ast.Module) -> bool:
    def is_mark(expr: ast.expr) -> bool:
        return "emulator_only" in ast.unparse(expr)
    module_marks = [n for n in module.body if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)]
    return any(is_mark(d) for d in node.decorator_list) or any(is_mark(n.value) for n in module_marks)


def test_every_contract_test_using_emulator_helpers_is_marked_emulator_only() -> None:
    unmarked = []
    for path in sorted(HERE.glob("test_emulator_*.py")):
        module = ast.parse(path.read_text())
        for node in module.body:
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            args = {a.arg for a in node.args.args}
            if "target" in args:  # parametrised over both targets by the test itself
                continue
            helpers = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
                       and isinstance(n.value, ast.Name) and n.value.id == "emulator" and n.attr in EMULATOR_HELPERS}
            if helpers and not _marked_emulator_only(node, module):
                unmarked.append(f"{path.name}::{node.name} uses emulator.{'/'.join(sorted(helpers))}")
    assert not unmarked, ("mark these @pytest.mark.emulator_only(reason=...) saying why they cannot run on "
                          "real Stripe:\n" + "\n".join(unmarked))
