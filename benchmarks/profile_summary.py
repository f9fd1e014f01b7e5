"""Where the samples of a py-spy profile go: `python3 benchmarks/profile_summary.py FILE [--top N]`.

FILE holds collapsed stacks (`py-spy record --format raw --threads`, as
`benchmarks/webhooks.py --profile DIR` writes them). It prints each thread's share of the samples,
then the functions with the largest inclusive share (a function counted once per stack it is on)
and the largest self share (the innermost frame).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_THREAD = re.compile(r"thread \(\d+\): ?([^;]*)")
_LINE = re.compile(r" \([^()]*:\d+\)$")


def frames_of(line: str) -> tuple[str, list[str], int]:
    """(thread name, frames outermost first without line numbers, sample count) of one stack."""
    stack, _, count = line.rpartition(" ")
    parts = stack.split(";")
    thread = "?"
    frames: list[str] = []
    for part in parts:
        found = _THREAD.match(part)
        if found:
            thread = found.group(1) or "?"
        elif not part.startswith("process "):
            frames.append(_LINE.sub("", part) + _file_of(part))
    return thread, frames, int(count)


def _file_of(frame: str) -> str:
    found = re.search(r"\(([^()]*):\d+\)$", frame)
    if not found:
        return ""
    path = found.group(1)
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f" [{path.split('/')[0] if '/' in path else path}]"


def summarize(text: str, top: int) -> str:
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        thread, frames, count = frames_of(line)
        total += count
        threads[thread] += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        return "no samples"
    out = [f"{total} samples"]
    out += ["threads:"] + [f"  {n / total:6.1%}  {name}" for name, n in threads.most_common()]
    out += [f"inclusive (top {top}):"] + [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    out += [f"self (top {top}):"] + [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    return "\n".join(out)


@contextmanager
def profiled(pid: int, directory: Path | None, name: str, duration: float, *, enabled: bool) -> Iterator[None]:
    """With --profile DIR: py-spy records the server (and its worker processes) while wrk drives it,
    as collapsed stacks (DIR/<name>.txt) summed by `summarize`."""
    if directory is None or not enabled:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"{name}.txt"
    spy = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--subprocesses", "--threads", "--nonblocking",
                            "--format", "raw", "--rate", "200", "--duration", str(max(1, round(duration))),
                            "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    print(summarize(args.file.read_text(), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
