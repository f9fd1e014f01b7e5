"""The receiver benchmark's smoke run (benchmarks/webhooks.py --quick): wrk replays pre-signed
events at the ceiling, our receiver and the peer on SQLite, and every acknowledged event is
stored exactly once, with a redelivery race stored once. Figures are printed, never asserted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_quick_benchmark_stores_every_acknowledged_event_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    run = subprocess.run([sys.executable, "benchmarks/webhooks.py", "--quick", "--json", str(out)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["generator"] == "wrk" and figures["exactly_once"] is True
    by_label = {r["label"].split()[0]: r for r in figures["results"]}
    assert set(by_label) == {"do-nothing", "bound:", "ours", "peer"}
    assert by_label["bound:"]["checks"]["commit_ms"] > 0  # the one-row commit the bound is read from
    ours = by_label["ours"]
    assert ours["acknowledged"] > 0 and ours["checks"]["stored"] >= ours["acknowledged"]
    assert ours["checks"]["race_stored_once"] is True and ours["checks"]["acknowledged_stored"] is True
    assert by_label["peer"]["checks"]["acknowledged_stored"] is True
    assert "exactly once: yes" in run.stdout
