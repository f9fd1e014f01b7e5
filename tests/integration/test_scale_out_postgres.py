"""Scale-out on PostgreSQL (issue 23): 4 receivers and 3 workers, each its own OS process (as on
separate machines), on one fresh PostgreSQL database, with the Stripe emulator (its own process) as
the workers' Stripe. Unique signed events, 10 % of them delivered a second time, every copy POSTed
over TCP to a random receiver while the workers run. Then every event is stored once, acknowledged
"stored" once, processed once (attempts 1, one effect row each; the 1 in 20 whose copy can be stale
re-read from Stripe exactly once, the rest not at all, per the emulator's request log), and the
duplicates are counted as exactly the copies sent.

N is SCALE_OUT_TEST_EVENTS (default 2,000; the code path is the same at any N): on the shared 2-core
machine the issue's 100,000 took about 12 minutes (150 events/s processed while the receivers ran),
far past the suite's budget; 2,000 take under a minute. `benchmarks/scale_out.py` runs the same check
at 100,000 by default (see benchmarks/README.md). Nothing here is timed."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import scale_out_fleet as scale

RECEIVERS = 4
WORKERS = 3
DUPLICATE_SHARE = 0.10
EVENTS = int(os.environ.get("SCALE_OUT_TEST_EVENTS", "2000"))


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[scale.Fleet]:
    """The run's processes; every one of them is ended afterwards, whatever the outcome."""
    running = scale.Fleet(tmp_path)
    try:
        yield running
    finally:
        running.close()


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_four_receivers_three_workers_store_and_process_every_event_exactly_once(
        postgres_url: str, fleet: scale.Fleet) -> None:
    secret = "whsec_" + secrets.token_hex(16)
    scale.prepare_database(postgres_url)
    emulator_base = fleet.emulator()
    fleet.env = scale.child_env(postgres_url, secret, emulator_base)
    ports = fleet.receivers(RECEIVERS)
    fleet.workers(WORKERS)
    events = scale.make_events(EVENTS, secret, uuid.uuid4().hex[:6])
    rereads = scale.store_earlier_deliveries(postgres_url, events)
    assert rereads == len(range(0, EVENTS, scale.REREAD_EVERY))
    plan, copies = scale.delivery_plan(EVENTS, DUPLICATE_SHARE, RECEIVERS, seed=23)

    delivered = scale.deliver(plan, events, ports, threads=16, secret=secret)

    logs = "\n".join(f"--- {name}\n{fleet.log_tail(name)}" for name in ("receiver0", "worker0"))
    # Every POST answered 200: no 5xx, no refusal; nothing left unanswered after redelivery.
    assert delivered.statuses == {200: len(plan)}, (delivered.statuses, logs)
    assert delivered.unanswered == 0
    # Each event acknowledged as "stored" by exactly one receiver, every other copy as "duplicate".
    assert sorted(delivered.stored_ids) == sorted(e.id for e in events)
    duplicates = delivered.outcomes["duplicate"]
    assert set(delivered.outcomes) == {"stored", "duplicate"}
    # A POST whose answer was lost is sent again (as Stripe would) and then counts as a copy too.
    assert copies <= duplicates <= copies + delivered.transport_errors

    scale.wait_drained(postgres_url, EVENTS)
    found = scale.exactly_once(postgres_url, events, emulator_base)

    assert found["stored"] == EVENTS and found["stored_once"] is True
    assert found["statuses"] == {"processed": EVENTS}
    assert found["attempts"] == {1: EVENTS}, found  # claimed once each: no second processing
    # The worker re-reads an object only where the event's copy can be stale (services/event_rereads.py):
    # one GET for each object with a same-second sibling, none for the others, no other request.
    assert found["stripe_reads"] == {0: EVENTS - rereads, 1: rereads}, found
    assert found["rereads_expected"] == found["stripe_requests"] == rereads and found["rereads_match"], found
    assert found["effect_rows"] == EVENTS  # an invoice or charge row for every event
    assert found["invoice_paid_points"] == found["invoices"]
    assert found["duplicate_deliveries"] == duplicates == found["duplicate_points"]
    if delivered.transport_errors == 0:
        assert found["events_with_copies"] == copies
