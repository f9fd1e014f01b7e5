"""A newcomer's path through the CLI (issue 17, point 6): `check` on a fresh directory
creates nothing and prints no library log lines; the demo's settings are an env file only
its owner can read, and `--env-file` points any command at it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from demo import write_env_file
from services.config import ENV_FILE_VARIABLE, load_settings
from tests.conftest import REPO_ROOT

_SETTING_NAMES = ("DATABASE_URL", "STRIPE_API_KEY", "STRIPE_SECRET_KEY", "STRIPE_MODE", "SENTRY_DSN",
                  ENV_FILE_VARIABLE)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SETTING_NAMES and not k.startswith("STRIPE_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def test_check_on_a_fresh_directory_creates_nothing_and_prints_no_library_logs(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, "-m", "cli", "check"], cwd=tmp_path, env=_clean_env(),
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1  # not ready: no key, no database
    assert list(tmp_path.iterdir()) == [], "check created files"
    output = completed.stdout + completed.stderr
    assert "db.migrated" in output and "billing_ops.db does not exist" in output
    assert " INFO " not in output and "alembic" not in output, output[:2000]
    for line in completed.stdout.splitlines():
        assert line.startswith(("FAIL", "WARN", "PASS", " ", "NOT READY", "READY")) or not line.strip(), line


def test_the_demo_env_file_is_private_and_drives_any_command(tmp_path: Path) -> None:
    database = tmp_path / "billing.db"
    env = {"DATABASE_URL": f"sqlite:///{database}", "STRIPE_MODE": "test", "STRIPE_API_KEY": "sk_test_demo123",
           "STRIPE_PLAN_PRICE_MAPPING_TEST": '{"basic": {"monthly": "price_1"}}'}
    env_file = tmp_path / "demo.env"
    write_env_file(env_file, env)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    settings = load_settings({ENV_FILE_VARIABLE: str(env_file)})
    assert settings.database_url == env["DATABASE_URL"] and settings.stripe_secret == "sk_test_demo123"
    assert settings.price_mapping["basic"]["monthly"] == "price_1"

    from cli import main

    upgraded = CliRunner().invoke(main, ["--env-file", str(env_file), "db", "upgrade"],
                                  env={name: None for name in _SETTING_NAMES}, catch_exceptions=False)
    assert upgraded.exit_code == 0, upgraded.output
    assert database.exists() and "Database at revision" in upgraded.output


def test_a_missing_env_file_is_one_line(tmp_path: Path) -> None:
    from cli import main

    result = CliRunner().invoke(main, ["--env-file", str(tmp_path / "nope.env"), "db", "upgrade"],
                                env={name: None for name in _SETTING_NAMES})
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "no such file" in result.output
