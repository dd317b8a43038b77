"""Retention: removes what is older than the retention, without holding a lock that stalls
ingestion for more than a second. Samples go by whole daily partitions on PostgreSQL and in
committed batches on SQLite; other apps add their own steps to CLEANUP_STEPS. Audit log
entries are never removed."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet
from django.utils.module_loading import import_string
from psycopg import errors as pg_errors

from . import storage
from .models import GlobalSettings

log = logging.getLogger("retention")

# DROP TABLE of a partition needs an ACCESS EXCLUSIVE lock on the sample table; while it
# waits for one, every insert queues behind it. So it waits at most this long, then tries
# again later.
DROP_LOCK_TIMEOUT = "1s"
DROP_ATTEMPTS = 3
DROP_RETRY_PAUSE_S = 0.5
# On SQLite, a pause between batches lets a waiting writer (ingestion) take the lock.
SQLITE_PAUSE_S = 0.005

# What the cleanup removes, in order: (what it is, dotted path of a function called with
# keyword arguments cutoff (datetime), batch_size (int), dry_run (bool) and progress (None,
# or a callable told the number of rows of each committed batch) that returns how many rows
# it removed, or would remove). Notifications go before alerts: an alert is deleted only
# once its notifications are.
CLEANUP_STEPS: list[tuple[str, str]] = [
    ("samples", "monitoring.retention.cleanup_samples"),
    ("health results", "healthchecks.retention.cleanup_results"),
    ("notifications", "notifications.retention.cleanup_notifications"),
    ("resolved alerts", "alerts.retention.cleanup_alerts"),
]

Progress = Callable[[int], None]


@dataclass(frozen=True)
class CleanupReport:
    cutoff: datetime
    dry_run: bool
    counts: dict[str, int]

    def line(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        parts = ", ".join(f"{count} {what}" for what, count in self.counts.items())
        return f"cleanup {verb} {parts} older than {self.cutoff:%Y-%m-%d %H:%M:%S} UTC"


def run_cleanup(
    *,
    days: int | None = None,
    now: datetime,
    dry_run: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> CleanupReport:
    """Remove everything older than `days` (default: the global retention) before `now`,
    step by step; each step commits as it goes, so run this outside a transaction.
    `progress(what, rows)` is told each committed batch."""
    settings = GlobalSettings.load()
    days = settings.retention_days if days is None else days
    cutoff = now - timedelta(days=days)
    counts = {}
    for what, path in CLEANUP_STEPS:
        step: Callable[..., int] = import_string(path)
        told = (lambda rows, what=what: progress(what, rows)) if progress else None
        counts[what] = step(cutoff=cutoff, batch_size=settings.batch_size, dry_run=dry_run, progress=told)
    report = CleanupReport(cutoff=cutoff, dry_run=dry_run, counts=counts)
    log.info("%s", report.line())
    return report


def cleanup_samples(*, cutoff: datetime, batch_size: int, dry_run: bool, progress: Progress | None = None) -> int:
    cutoff_ms = int(cutoff.timestamp() * 1000)
    if dry_run:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM monitoring_sample WHERE ts < %s", [cutoff_ms])
            return cursor.fetchone()[0]
    return delete_samples_before(cutoff_ms, batch_size, progress)


def delete_samples_before(cutoff_ms: int, batch_size: int, progress: Progress | None = None) -> int:
    """Delete every sample with ts < cutoff_ms; returns how many. On PostgreSQL, daily
    partitions entirely before the cutoff are dropped and the rest of the boundary day
    (and the DEFAULT partition) deleted in batches; on SQLite, batches of `batch_size`."""
    if not storage.is_postgres():
        return _delete_in_batches("monitoring_sample", "rowid", cutoff_ms, batch_size, progress)
    deleted = 0
    partial = [storage.DEFAULT_PARTITION]
    can_drop = True
    for day, name in sorted(storage.existing_partitions().items()):
        start, end = day * storage.DAY_MS, (day + 1) * storage.DAY_MS
        if end <= cutoff_ms and can_drop:
            dropped = _drop_partition(day, name)
            if dropped is not None:
                deleted += dropped
                if progress:
                    progress(dropped)
                continue
            # Never stall ingestion: empty the partitions in small batches instead; the
            # next run drops the empty tables.
            log.warning("could not lock the sample table to drop %s; deleting in batches this time", name)
            can_drop = False
        if start < cutoff_ms:
            partial.append(name)
    for table in partial:
        deleted += _delete_in_batches(table, "ctid", cutoff_ms, batch_size, progress)
    return deleted


def _drop_partition(day: int, name: str) -> int | None:
    """Drop a partition, waiting at most DROP_LOCK_TIMEOUT for the lock each attempt;
    returns how many samples it held, or None when the lock never came."""
    for attempt in range(1, DROP_ATTEMPTS + 1):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SELECT COUNT(*) FROM {name}")  # noqa: S608 (a name we made)
                count = cursor.fetchone()[0]
                cursor.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
                cursor.execute(f"DROP TABLE {name}")
            storage.forget_partition(day)
            log.info("dropped sample partition %s (%d samples)", name, count)
            return count
        except OperationalError as exc:
            if not isinstance(exc.__cause__, pg_errors.LockNotAvailable):
                raise
            log.info("sample partition %s busy (attempt %d of %d)", name, attempt, DROP_ATTEMPTS)
            if attempt < DROP_ATTEMPTS:
                time.sleep(DROP_RETRY_PAUSE_S * attempt)
    return None


def _delete_in_batches(
    table: str, row_id: str, cutoff_ms: int, batch_size: int, progress: Progress | None = None
) -> int:
    """Delete rows with ts < cutoff_ms from `table`, `batch_size` rows per transaction."""
    if row_id == "ctid":  # PostgreSQL: = ANY(ARRAY(...)) makes a TID scan; IN (...) would scan the table
        sql = f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE ts < %s LIMIT %s))"  # noqa: S608
    else:
        sql = f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE ts < %s LIMIT %s)"  # noqa: S608
    pause = SQLITE_PAUSE_S if not storage.is_postgres() and not connection.in_atomic_block else 0
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [cutoff_ms, batch_size])
            count = cursor.rowcount
        deleted += count
        if progress:
            progress(count)
        if count < batch_size:
            return deleted
        if pause:
            time.sleep(pause)


def delete_queryset_in_batches(
    queryset: QuerySet,
    *,
    batch_size: int,
    progress: Progress | None = None,
    before_delete: Callable[[list], None] | None = None,
) -> int:
    """Delete the rows of `queryset` (and what cascades from them), `batch_size` at a time,
    each batch in its own transaction, so a writer waits at most one batch;
    `before_delete(ids)` runs in that transaction first. Returns how many rows of the
    queryset's model went."""
    model = queryset.model
    pause = SQLITE_PAUSE_S if not storage.is_postgres() and not connection.in_atomic_block else 0
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
            if not ids:
                return deleted
            if before_delete:
                before_delete(ids)
            _, per_model = model._base_manager.filter(pk__in=ids).delete()
        count = per_model.get(model._meta.label, 0)
        deleted += count
        if progress:
            progress(count)
        if len(ids) < batch_size:
            return deleted
        if pause:
            time.sleep(pause)
