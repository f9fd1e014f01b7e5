"""`billing-ops`: the console's commands. Each parses options, calls one service
function and prints the result; a bad setting is one line on stderr, exit 2."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from services.config import SettingsError, load_settings

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_CONSOLE_PORT = 8501
DEFAULT_WEBHOOK_PORT = 8502
DEFAULT_EMULATOR_PORT = 12111


def friendly_errors(fn: F) -> F:
    """Settings, Stripe and every other ConsoleError end the command with one plain line, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from services.errors import ConsoleError
        from services.stripe_gateway import StripeGatewayError

        try:
            return fn(*args, **kwargs)
        except SettingsError as error:
            click.echo(f"Configuration error: {error}", err=True)
            sys.exit(2)
        except StripeGatewayError as error:
            click.echo(f"Stripe error: {error.message}", err=True)
            sys.exit(3)
        except ConsoleError as error:  # any other refusal the console words for people
            click.echo(f"Refused: {error.message}", err=True)
            sys.exit(4)

    return wrapper  # type: ignore[return-value]


def _runtime() -> Any:
    from services.observability import configure_logging, init_sentry
    from services.runtime import Runtime, set_runtime

    runtime = Runtime(load_settings())
    configure_logging(settings=runtime.settings)
    init_sentry(runtime.settings)
    set_runtime(runtime)
    return runtime


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, sort_keys=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--env-file", type=click.Path(dir_okay=False), default=None,
              help="Read settings from this env file instead of ./.env (e.g. demo_data/demo.env).")
def main(env_file: str | None) -> None:
    """Billing Ops Console: disputes, fraud warnings, webhooks, reconciliation and go-live on Stripe."""
    if env_file:
        import os

        from services.config import ENV_FILE_VARIABLE

        os.environ[ENV_FILE_VARIABLE] = env_file


# --- database -----------------------------------------------------------------------
@main.group()
def db() -> None:
    """Database commands."""


@db.command("upgrade")
@friendly_errors
def db_upgrade() -> None:
    """Run migrations up to the latest revision and add the go-live checklist's items."""
    from db.migrate import current_revision
    from services.schema import upgrade_and_seed

    settings = load_settings()
    added = upgrade_and_seed(settings.database_url)
    click.echo(f"Database at revision {current_revision(settings.database_url)}"
               + (f"; {added} go-live checklist item(s) added." if added else "."))


# --- console, demo, emulator ----------------------------------------------------------
@main.command()
@click.option("--port", default=DEFAULT_CONSOLE_PORT, show_default=True)
@click.option("--webhook-port", default=DEFAULT_WEBHOOK_PORT, show_default=True)
@click.option("--emulator-port", default=DEFAULT_EMULATOR_PORT, show_default=True)
@click.option("--data-dir", default="demo_data", show_default=True, help="Where the demo keeps its SQLite DB.")
@click.option("--customers", default=300, show_default=True, help="How many customers the seeded month has.")
@click.option("--headless/--no-headless", default=True, help="Do not open a browser.")
@friendly_errors
def demo(port: int, webhook_port: int, emulator_port: int, data_dir: str, customers: int, headless: bool) -> None:
    """Emulator + seeded month + webhook receiver + console on SQLite; no Stripe account needed."""
    from demo import run_demo

    run_demo(
        console_port=port,
        webhook_port=webhook_port,
        emulator_port=emulator_port,
        data_dir=data_dir,
        customers=customers,
        headless=headless,
    )


@main.command()
@click.option("--port", default=DEFAULT_CONSOLE_PORT, show_default=True)
@friendly_errors
def run(port: int) -> None:
    """The console against the configured Stripe account (test or live)."""
    from demo import run_console
    from services.schema import upgrade_and_seed
    from services.sign_in import load_credentials

    settings = load_settings()
    load_credentials(settings)  # a missing or short cookie key stops here with one line
    upgrade_and_seed(settings.database_url)
    sys.exit(run_console(port=port, env={}, wait=True))


@main.command()
@click.option("--port", default=DEFAULT_EMULATOR_PORT, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--state", "state_file", default=None, help="Persist the emulator's state in this JSON file.")
@click.option("--rate-limit", default=25.0, show_default=True, help="Requests per second before 429.")
def emulator(port: int, host: str, state_file: str | None, rate_limit: float) -> None:
    """The Stripe emulator alone."""
    from emulator.server import serve_forever

    click.echo(f"Stripe emulator on http://{host}:{port} (use STRIPE_API_BASE=http://{host}:{port})")
    serve_forever(host, port, state_file, rate_limit)


@main.command("serve-webhooks")
@click.option("--port", default=DEFAULT_WEBHOOK_PORT, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--workers", default=1, show_default=True, help="Receiver processes (events are stored once anyway).")
@friendly_errors
def serve_webhooks(port: int, host: str, workers: int) -> None:
    """The webhook receiver: POST /billing/webhook, GET /healthz, GET /metrics."""
    import uvicorn

    from webhooks.server import uvicorn_options

    settings = load_settings()  # fail fast, with one line, before any worker starts
    # Bounded connections and timeouts (WEBHOOK_LIMIT_CONCURRENCY and friends, see webhooks/server.py).
    uvicorn.run("webhooks.app:create_app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning", **uvicorn_options(settings))


@main.command()
@click.option("--once", is_flag=True, help="Do one round of work and exit.")
@friendly_errors
def worker(once: bool) -> None:
    """Event processing and reconciliation on its cron (safe with several workers)."""
    from services.worker import run_worker

    run_worker(_runtime(), once=once, echo=click.echo)


# --- kill switches -----------------------------------------------------------------------
SWITCH_CHOICE = click.Choice(["processing", "reconcile"])


@main.command()
@click.argument("switch", type=SWITCH_CHOICE)
@click.option("--reason", required=True, help="Why (stored, audited and shown on every page).")
@click.option("--actor", default="cli", show_default=True, help="Who is pausing (recorded).")
@friendly_errors
def pause(switch: str, reason: str, actor: str) -> None:
    """Pause event processing or automated downgrades on every worker within one poll."""
    from services.audit import SystemCaller
    from services.switches import pause_switch

    runtime = _runtime()
    state = pause_switch(switch, reason=reason, actor=SystemCaller(actor), settings=runtime.settings, uow=runtime.uow())
    click.echo(f"{switch} paused by {state.by} at {state.since_text}: {state.reason}")


@main.command()
@click.argument("switch", type=SWITCH_CHOICE)
@click.option("--actor", default="cli", show_default=True, help="Who is resuming (recorded).")
@friendly_errors
def resume(switch: str, actor: str) -> None:
    """Resume a paused switch; held events are then processed in Stripe's order."""
    from services.audit import SystemCaller
    from services.switches import resume_switch

    runtime = _runtime()
    resume_switch(switch, actor=SystemCaller(actor), settings=runtime.settings, uow=runtime.uow())
    click.echo(f"{switch} resumed.")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable switches and backlog.")
@friendly_errors
def status(as_json: bool) -> None:
    """The kill switches and the event backlog."""
    from services.switches import status as switch_status

    runtime = _runtime()
    report = switch_status(runtime.uow)
    if as_json:
        _print_json(report)
        return
    for name in ("processing", "reconcile"):
        state = report[name]
        click.echo(f"{name:<11} " + (f"PAUSED by {state['by']} since {state['since']}: {state['reason']}"
                                     if state["paused"] else "running"))
    backlog = report["backlog"]
    age = "-" if backlog["oldest_age_seconds"] is None else f"{backlog['oldest_age_seconds']:.0f} s"
    click.echo(f"backlog     {backlog['events']} event(s) waiting, oldest {age}")


# --- reconciliation, sync, prune ---------------------------------------------------------
@main.command()
@click.option("--apply", "apply_changes", is_flag=True, help="Apply due downgrades (default: dry-run).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON (schema in docs/reconcile.schema.json).")
@friendly_errors
def reconcile(apply_changes: bool, as_json: bool) -> None:
    """One reconciliation run; dry-run by default."""
    from services.reconciliation import ReconcileRefused, format_run_table, run_reconciliation, run_to_json

    runtime = _runtime()
    try:
        report = run_reconciliation(
            settings=runtime.settings,
            uow=runtime.uow(),
            gateway=runtime.gateway,
            apply=apply_changes,
            actor="cli",
            trigger="cli",
        )
    except ReconcileRefused as refused:  # nothing ran and no run was stored; exit 4 like every refusal
        click.echo(refused.message, err=True)
        sys.exit(4)
    if as_json:
        _print_json(run_to_json(report))
    else:
        click.echo(format_run_table(report))
    if report.error:  # the run stopped early (e.g. Stripe unreachable): fail the cron/CI step
        sys.exit(1)


@main.command()
@click.option("--since", default=None, help="ISO date/time to backfill from (max 30 days back).")
@click.option("--days", default=None, type=int, help="Backfill this many days (max 30).")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming an unfinished sync.")
@friendly_errors
def sync(since: str | None, days: int | None, fresh: bool) -> None:
    """Backfill from the Events API and list endpoints (missed webhooks, first install); a sync
    stopped part-way resumes where it stopped when run again with the same options."""
    from services.sync import run_sync

    runtime = _runtime()
    # The bar's length is the time range (there is no event count to ask for): its ETA assumes
    # events spread evenly over the range, the line beside it gives the real count and rate.
    with click.progressbar(length=1000, label="events", show_eta=True, show_pos=False, width=24,
                           file=sys.stderr, item_show_func=lambda text: text) as bar:
        def on_page(done: Any) -> None:
            bar.update(int(done.covered * 1000) - bar.pos,
                       f"{done.fetched:,} fetched, {done.per_second:,.0f}/s")

        summary = run_sync(runtime, since=since, days=days, progress=click.echo, on_page=on_page, fresh=fresh)
    _print_json(summary)


@main.command("prune-webhooks")
@click.option("--url", required=True, help="The console's webhook URL (the endpoint to keep).")
@click.option("--apply", "apply_changes", is_flag=True, help="Delete the listed endpoints (default: dry-run).")
@friendly_errors
def prune_webhooks(url: str, apply_changes: bool) -> None:
    """Remove stale/duplicate webhook endpoints; dry-run by default."""
    from services.webhooks import prune_webhook_endpoints

    runtime = _runtime()
    for line in prune_webhook_endpoints(runtime, url=url, apply=apply_changes, actor="cli"):
        click.echo(line)


# --- go-live -------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result for CI.")
@click.option("--repo", "repo", default=None, type=click.Path(file_okay=False),
              help="Also scan this deployment repository (files and git history) for committed Stripe secrets.")
@friendly_errors
def check(as_json: bool, repo: str | None) -> None:
    """The go-live preflight; exit 1 on any blocking failure."""
    from services import checklist
    from services.preflight import format_report, has_blocking_failure
    from services.preflight_record import box_rows, run_and_record

    runtime = _runtime()
    results, ran_at, recorded = run_and_record(runtime, actor="cli", repo=repo)
    if as_json:
        from db.session import missing_sqlite_file

        items = []
        if not missing_sqlite_file(runtime.settings.database_url):
            try:
                items = checklist.list_items(runtime.uow())
            except Exception:  # no checklist without a migrated DB; db.migrated says so
                items = []
        _print_json({"ready": not has_blocking_failure(results), "ran_at": ran_at.isoformat(timespec="seconds"),
                     "recorded": recorded, "checks": [result.to_dict() for result in results],
                     "boxes": box_rows(results, ran_at, items)})
    else:
        click.echo(format_report(results))
    sys.exit(1 if has_blocking_failure(results) else 0)


@main.command()
@click.option("--out", "out_file", default=None, help="Also write the snapshot JSON to this file.")
@click.option("--hours", default=24, show_default=True, help="Window length from the go-live time.")
@friendly_errors
def snapshot(out_file: str | None, hours: int) -> None:
    """Freeze the first-24h metrics into an immutable snapshot used by sign-off."""
    from services.metrics import take_snapshot

    runtime = _runtime()
    record = take_snapshot(runtime, actor="cli", hours=hours)
    if out_file:
        with open(out_file, "w") as handle:
            json.dump(record, handle, indent=2, default=str)
    _print_json({"snapshot_id": record["id"], "window": record["window"], "sha256": record["sha256"]})


@main.group()
def qa() -> None:
    """The 8-case plan-change QA matrix (test mode only)."""


@qa.command("run")
@click.option("--case", "case_ids", multiple=True, help="Run only these case ids.")
@click.option("--actor", default="cli", show_default=True)
@friendly_errors
def qa_run(case_ids: tuple[str, ...], actor: str) -> None:
    """Run the QA matrix against Stripe test mode (or the emulator)."""
    from services.qa_matrix import run_matrix_cli

    runtime = _runtime()
    ok = run_matrix_cli(runtime, case_ids=list(case_ids) or None, actor=actor, echo=click.echo)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
