"""The layering ARCHITECTURE.md describes, checked from the imports: services/ never reach
up into pages or entry points (streamlit, webhooks/, emulator/, cli, demo), and only the
gateway imports the stripe SDK."""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
UPWARD = {"streamlit", "webhooks", "emulator", "app_pages", "cli", "demo", "app", "console_server"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_services_import_nothing_above_them() -> None:
    modules = sorted((REPO_ROOT / "services").glob("*.py"))
    assert len(modules) > 30
    upward = {p.name: sorted(_imports(p) & UPWARD) for p in modules if _imports(p) & UPWARD}
    assert upward == {}


def test_only_the_gateway_imports_stripe() -> None:
    importers = sorted(p.name for p in (REPO_ROOT / "services").glob("*.py") if "stripe" in _imports(p))
    assert importers == ["stripe_gateway.py"]
