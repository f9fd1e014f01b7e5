"""Run Alembic migrations programmatically (`billing-ops db upgrade`, the demo, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.session import get_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_at_head(url: str) -> bool:
    return current_revision(url) == head_revision()


def regenerate_initial_migration() -> Path:
    """Rewrite 0001 from the models. Only while nothing builds on it: once a later
    revision exists (0002 onwards) every schema change gets its own revision."""
    import tempfile

    versions = MIGRATIONS_DIR / "versions"
    later = sorted(p.name for p in versions.glob("*.py") if not p.name.startswith("0001_"))
    if later:
        raise SystemExit(f"0001 is frozen: later revisions build on it ({', '.join(later)}). "
                         "Add a revision with `alembic revision --autogenerate` instead.")
    for old in versions.glob("0001_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as scratch:
        command.revision(
            alembic_config(f"sqlite:///{scratch}/empty.db"),
            message="initial billing schema",
            autogenerate=True,
            rev_id="0001",
        )
    return next(versions.glob("0001_*.py"))


if __name__ == "__main__":
    print(regenerate_initial_migration())
