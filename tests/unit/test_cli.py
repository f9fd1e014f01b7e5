from __future__ import annotations

from click.testing import CliRunner

from cli import main

DESIGN_COMMANDS = ["demo", "run", "serve-webhooks", "worker", "reconcile", "sync", "prune-webhooks", "check",
                   "snapshot", "db", "emulator", "qa"]


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in DESIGN_COMMANDS:
        assert command in result.output
    db_help = CliRunner().invoke(main, ["db", "--help"])
    assert "upgrade" in db_help.output


def test_bad_setting_is_one_line_without_traceback_or_secret() -> None:
    result = CliRunner().invoke(
        main, ["db", "upgrade"], env={"STRIPE_MODE": "live", "STRIPE_API_KEY": "sk_test_CANARYcli999"}
    )
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert result.output.startswith("Configuration error: STRIPE_MODE")
    assert "CANARY" not in result.output and "Traceback" not in result.output


def test_db_upgrade_migrates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/cli.db"
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    from db.migrate import head_revision, is_at_head

    assert f"revision {head_revision()}" in result.output and is_at_head(url)
