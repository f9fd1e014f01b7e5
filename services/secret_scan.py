"""Find Stripe secrets committed to a deployment repository (ALwrity checklist §1, §9).

Scans the working tree's files and every revision in the git history
(`git log --all -p`, through the git command line) for live secret keys,
restricted live keys and webhook signing secrets. A finding names the file,
the line, and the commit where it was added; the secret itself is never kept:
only its prefix and length (`sk_live_…(107 chars)`).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from services.errors import ConsoleError

# Stripe secrets are long; a placeholder such as `sk_live_...` or `whsec_xxx` in docs is not one.
SECRET_PATTERN = re.compile(r"\b(sk_live_|rk_live_|whsec_)[0-9A-Za-z]{16,}")
# The same pattern as a POSIX extended regex, for `git log -G` (picks the commits; Python finds the lines).
GIT_PATTERN = "(sk_live_|rk_live_|whsec_)[0-9A-Za-z]{16,}"
MAX_FILE_BYTES = 2_000_000
SKIP_DIRS = {".git", "node_modules", ".venv", "venv", "__pycache__"}
GIT_TIMEOUT_SECONDS = 120


class SecretScanError(ConsoleError):
    """The repository cannot be scanned."""


@dataclass(frozen=True)
class Finding:
    kind: str  # the prefix: sk_live_, rk_live_ or whsec_
    path: str
    line: int | None
    commit: str | None  # None: in the working tree
    masked: str

    def describe(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{self.masked} in {where}" + (f" (commit {self.commit[:12]})" if self.commit else " (working tree)")


def mask(secret: str) -> str:
    prefix = SECRET_PATTERN.match(secret)
    return f"{prefix.group(1) if prefix else '?'}…({len(secret)} chars)"


def _scan_text(text: str, path: str, commit: str | None, line: int | None = None) -> list[Finding]:
    found = []
    for number, content in enumerate(text.splitlines(), start=1):
        for match in SECRET_PATTERN.finditer(content):
            found.append(Finding(match.group(1), path, line if line is not None else number, commit,
                                 mask(match.group(0))))
    return found


def scan_files(root: str) -> list[Finding]:
    findings: list[Finding] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS)
        for name in sorted(files):
            full = os.path.join(directory, name)
            try:
                if os.path.getsize(full) > MAX_FILE_BYTES:
                    continue
                with open(full, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            if b"\0" in data:  # binary
                continue
            findings.extend(_scan_text(data.decode("utf-8", "replace"), os.path.relpath(full, root), None))
    return findings


def _git(root: str, *args: str) -> str:
    try:
        completed = subprocess.run(["git", "-C", root, *args], capture_output=True, timeout=GIT_TIMEOUT_SECONDS,
                                   check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SecretScanError(f"git could not read the history ({error.__class__.__name__}).") from None
    if completed.returncode != 0:
        raise SecretScanError("git could not read the history of this repository.")
    return completed.stdout.decode("utf-8", "replace")


def is_git_repository(root: str) -> bool:
    try:
        return _git(root, "rev-parse", "--is-inside-work-tree").strip() == "true"
    except SecretScanError:
        return False


def scan_history(root: str) -> list[Finding]:
    """Every added line in every commit of every ref (a secret removed later is still leaked)."""
    if not _git(root, "rev-list", "--all", "--max-count=1").strip():
        return []  # no commits yet
    log = _git(root, "log", "--all", "-p", "--no-color", "--no-ext-diff", "--extended-regexp", "-G", GIT_PATTERN,
               "--format=commit %H")
    findings: list[Finding] = []
    commit: str | None = None
    path = ""
    new_line = 0
    for raw in log.splitlines():
        if raw.startswith("commit ") and len(raw) == 47:
            commit = raw[7:]
        elif raw.startswith("+++ "):
            path = raw[6:] if raw.startswith("+++ b/") else raw[4:]
        elif raw.startswith("@@"):
            hunk = re.search(r"\+(\d+)", raw)
            new_line = int(hunk.group(1)) if hunk else 0
        elif raw.startswith("+"):
            findings.extend(_scan_text(raw[1:], path, commit, new_line))
            new_line += 1
        elif not raw.startswith("-"):
            new_line += 1
    return findings


def scan_repository(root: str) -> list[Finding]:
    """Working-tree files plus, when `root` is a git repository, its whole history."""
    if not os.path.isdir(root):
        raise SecretScanError(f"{root} is not a directory.")
    findings = scan_files(root)
    if is_git_repository(root):
        findings.extend(scan_history(root))
    return findings
