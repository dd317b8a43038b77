"""Importing a configuration file: read, validate as a whole, plan, and apply the plan in
one transaction with one audit entry; or, for a dry run, only plan."""

from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.models import User
from django.db import connection, transaction

from monitoring.audit import record_audit
from monitoring.choices import AuditAction, AuditSource

from .apply import apply_plan
from .errors import ConfigError, Problem
from .plan import Action, Plan, build_plan, load_known_keys
from .schema import parse_config
from .yamlio import load_yaml

# Any constant: two imports on PostgreSQL queue on it instead of planning the same
# creates side by side. SQLite's IMMEDIATE transactions already hold the one write lock.
_IMPORT_LOCK_ID = 0x4D4F4E43  # "MONC"


@dataclass(frozen=True)
class ImportResult:
    path: Path
    plan: Plan
    applied: bool


def read_config_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("", f"cannot read {path}: not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read {path}: {exc.strerror or exc}")]) from None


def _lock_imports() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_IMPORT_LOCK_ID])


def import_config_file(path: Path | str, *, dry_run: bool = False, actor: User | str | None = None) -> ImportResult:
    """Import the configuration at `path`: ConfigError (nothing written) when the file is
    unreadable or invalid anywhere; otherwise every change in one transaction, recorded
    as one audit entry naming `actor` (a user, or the shell's account name). A dry run
    plans and writes nothing."""
    path = Path(path)
    document = load_yaml(read_config_text(path))
    with transaction.atomic():
        _lock_imports()
        plan = build_plan(parse_config(document, load_known_keys()))
        if dry_run:
            return ImportResult(path=path, plan=plan, applied=False)
        apply_plan(plan)
        record_audit(
            actor=actor,  # record_audit names a non-user actor by its text
            source=AuditSource.CLI,
            action=AuditAction.IMPORT,
            object_type="monitoring.config",
            object_repr=str(path),
            after={
                "file": str(path.resolve()),
                "created": plan.count(Action.CREATE),
                "updated": plan.count(Action.UPDATE),
                "unchanged": plan.count(Action.UNCHANGED),
                "changes": [c.describe() for c in plan.changes if c.action != Action.UNCHANGED],
            },
        )
    return ImportResult(path=path, plan=plan, applied=True)
