"""Every box of both runbooks (listed from the runbooks in tests/data/runbook_boxes.tsv)
is either ticked by preflight checks that a full run really produces, or by a manual
checklist item that says why no machine can tick it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.checklist import SEED_BY_KEY, SEED_ITEMS
from services.preflight import run_preflight
from services.runbook_boxes import BOXES, check_matches
from services.runtime import Runtime
from tests.integration.golive_fixtures import FakePreflightGateway, LocalHttp, golive_settings

DATA = Path(__file__).resolve().parent.parent / "data" / "runbook_boxes.tsv"


def _seed_boxes() -> list[tuple[str, str, str]]:
    rows = [line.split("\t") for line in DATA.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    return [(r[0], r[1], r[2]) for r in rows]


def test_every_runbook_box_is_mapped_in_order() -> None:
    expected = _seed_boxes()
    assert len(expected) == 192
    assert [(b.runbook, b.section, b.text) for b in BOXES] == expected
    assert len({b.id for b in BOXES}) == len(BOXES)


def test_each_box_is_either_a_check_or_a_manual_item_with_why() -> None:
    for box in BOXES:
        assert box.automated != bool(box.manual), box.id
        if box.manual:
            assert box.manual in SEED_BY_KEY, box.id
            assert len(SEED_BY_KEY[box.manual].why) > 20, box.manual
    assert all(item.why for item in SEED_ITEMS)


def test_every_mapped_check_is_produced_by_a_full_run(migrated_sqlite_url: str, tmp_path: Any) -> None:
    from services.prometheus import exposition

    metrics = LocalHttp(metrics_body=exposition())
    ingest = LocalHttp()
    try:
        settings = golive_settings(migrated_sqlite_url, STRIPE_AUTOMATIC_TAX_ENABLED="true",
                                   STRIPE_WALLETS_ENABLED="true", METRICS_ENABLED="true",
                                   METRICS_URLS=metrics.base_url + "/metrics", SENTRY_DSN=ingest.dsn)
        runtime = Runtime(settings)
        runtime.__dict__["gateway"] = FakePreflightGateway()
        ids = {r.id for r in run_preflight(runtime, repo=str(tmp_path), explicit_run=True)}
    finally:
        metrics.stop()
        ingest.stop()
    for box in BOXES:
        for pattern in box.checks:
            assert any(check_matches(pattern, check_id) for check_id in ids), (box.id, pattern)
