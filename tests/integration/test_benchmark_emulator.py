"""benchmarks/emulator.py in its quick form: the whole SDK workload answered by the emulator,
and (when localstripe is installed in its own virtualenv) every call localstripe answers also
answered by the emulator. Nothing here is timed; the figures are the benchmark's to print."""

from __future__ import annotations

import pytest

from benchmarks import emulator as bench
from benchmarks._common import stop_process


def _run(name: str, process_port: int, rounds: int) -> bench.Result:
    return bench.run_workload(name, f"http://127.0.0.1:{process_port}", seconds=10.0, threads=2, max_rounds=rounds)


def test_the_emulator_answers_the_whole_workload() -> None:
    port = bench._free_port()
    process = bench.start_emulator(port)
    try:
        result = _run("emulator", port, rounds=2)
    finally:
        stop_process(process)
    failing = {name: tally.first_error for name, tally in result.calls.items() if tally.failed}
    assert not failing, failing
    assert result.answered() == {name for name, _ in bench.WORKLOAD}
    assert result.requests == 2 * 2 * len(bench.WORKLOAD)
    table = bench.report([result], "not run in this test")
    assert "goal: >= 2x localstripe's throughput" in table


def test_the_emulator_answers_every_call_localstripe_answers() -> None:
    executable, why_not = bench.find_localstripe()
    if executable is None:
        pytest.skip(why_not)
    results = []
    for name, start in (("emulator", bench.start_emulator),
                        ("localstripe", lambda port: bench.start_localstripe(executable, port))):
        port = bench._free_port()
        process = start(port)
        try:
            results.append(_run(name, port, rounds=1))
        finally:
            stop_process(process)
    ours, peer = results
    assert peer.answered(), "localstripe answered nothing: the workload did not reach it"
    assert peer.answered() <= ours.answered(), sorted(peer.answered() - ours.answered())
