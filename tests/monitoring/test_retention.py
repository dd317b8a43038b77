"""monitoring.retention, the cleanup task and `manage.py cleanup`: exactly what is older than
the cutoff goes (whole partitions dropped on PostgreSQL, batches on SQLite)."""

from datetime import UTC, date, datetime, timedelta
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from monitoring import storage
from monitoring.ingest import SampleIn, ingest_samples
from monitoring.models import AuditLogEntry, GlobalSettings, Sample
from monitoring.retention import delete_samples_before, run_cleanup
from monitoring.tasks import cleanup_task, maintain_partitions_task

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY = (NOW.date() - date(1970, 1, 1)).days
HOUR_S = 3600


def store_hourly(days: int) -> list[int]:
    """One sample per hour per series (two series) for `days` days before NOW; returns
    the stored timestamps (ms)."""
    start = NOW.timestamp() - days * 86400
    times = [start + h * HOUR_S for h in range(days * 24)]
    batch = [SampleIn("temp", {"device_id": d}, 20.0, t) for t in times for d in ("a", "b")]
    assert ingest_samples(batch, now=NOW).accepted == len(batch)
    return [round(t * 1000) for t in times]


def remaining_ts() -> list[int]:
    return sorted(set(Sample.objects.values_list("ts", flat=True)))


def test_retention_removes_exactly_what_is_older_than_the_cutoff():
    times = store_hourly(5)
    cutoff_ms = times[50] + 1  # in the middle of a day, one ms after a sample

    deleted = delete_samples_before(cutoff_ms, batch_size=7)

    assert deleted == 2 * 51
    assert remaining_ts() == [ts for ts in times if ts >= cutoff_ms]
    assert Sample.objects.filter(ts__lt=cutoff_ms).count() == 0


def test_a_sample_exactly_at_the_cutoff_stays():
    times = store_hourly(2)

    delete_samples_before(times[10], batch_size=1000)

    assert remaining_ts()[0] == times[10]


def test_whole_days_before_the_cutoff_are_dropped_as_partitions_on_postgresql():
    times = store_hourly(4)
    cutoff_ms = (DAY - 1) * storage.DAY_MS + 6 * 3_600_000  # 06:00 yesterday

    deleted = delete_samples_before(cutoff_ms, batch_size=1000)

    assert deleted == 2 * len([ts for ts in times if ts < cutoff_ms])
    assert remaining_ts() == [ts for ts in times if ts >= cutoff_ms]
    if storage.is_postgres():
        days = storage.existing_partitions()
        assert DAY - 2 not in days and DAY - 3 not in days  # dropped whole
        assert DAY - 1 in days  # the boundary day keeps its partition and its later rows


def test_partition_drop_gives_way_to_a_lock_holder_and_deletes_in_batches_instead():
    times = store_hourly(3)
    cutoff_ms = (DAY - 1) * storage.DAY_MS
    if not storage.is_postgres():
        assert delete_samples_before(cutoff_ms, batch_size=10) == 2 * len([t for t in times if t < cutoff_ms])
        return
    # Another session reading the sample table holds a lock that DROP TABLE must wait for.
    settings = connection.settings_dict
    other = psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        options="-c lock_timeout=10s",
    )
    try:
        other.execute("LOCK TABLE ONLY monitoring_sample IN ACCESS SHARE MODE")

        deleted = delete_samples_before(cutoff_ms, batch_size=10)
    finally:
        other.rollback()
        other.close()

    assert deleted == 2 * len([ts for ts in times if ts < cutoff_ms])
    assert remaining_ts() == [ts for ts in times if ts >= cutoff_ms]
    assert DAY - 2 in storage.existing_partitions()  # emptied, not dropped: the next run drops it


def test_rows_in_the_default_partition_are_deleted_too():
    series_batch = [SampleIn("temp", {}, 1.0, NOW.timestamp())]
    ingest_samples(series_batch, now=NOW)
    series_id = Sample.objects.get().series_id
    old_ms = (DAY - 40) * storage.DAY_MS  # a day without a partition: the DEFAULT one on PostgreSQL
    Sample.objects.bulk_create([Sample(series_id=series_id, ts=old_ms + i, value=0.0) for i in range(5)])

    deleted = delete_samples_before(old_ms + 3, batch_size=2)

    assert deleted == 3
    assert remaining_ts() == [old_ms + 3, old_ms + 4, int(NOW.timestamp() * 1000)]


def test_run_cleanup_uses_the_global_retention_and_counts():
    times = store_hourly(3)
    settings = GlobalSettings.load()
    settings.retention_days = 2
    settings.save()

    report = run_cleanup(now=NOW)

    cutoff_ms = int((NOW - timedelta(days=2)).timestamp() * 1000)
    assert report.counts["samples"] == 2 * len([ts for ts in times if ts < cutoff_ms])
    assert remaining_ts() == [ts for ts in times if ts >= cutoff_ms]


def test_dry_run_counts_and_deletes_nothing():
    times = store_hourly(3)

    report = run_cleanup(days=1, now=NOW, dry_run=True)

    cutoff_ms = int((NOW - timedelta(days=1)).timestamp() * 1000)
    assert report.counts["samples"] == 2 * len([ts for ts in times if ts < cutoff_ms])
    assert remaining_ts() == times


def test_cleanup_command_prints_counts_and_audits():
    now = datetime.now(UTC)
    batch = [SampleIn("temp", {}, 1.0, (now - timedelta(days=d)).timestamp()) for d in (0, 2, 3)]
    ingest_samples(batch, now=now)
    out = StringIO()

    call_command("cleanup", "--days", "1", stdout=out)

    assert "Removed 2 samples." in out.getvalue()
    assert Sample.objects.count() == 1
    entry = AuditLogEntry.objects.get(object_type="retention")
    assert entry.after["samples"] == 2


def test_cleanup_command_dry_run_changes_nothing():
    now = datetime.now(UTC)
    ingest_samples([SampleIn("temp", {}, 1.0, (now - timedelta(days=3)).timestamp())], now=now)
    out = StringIO()

    call_command("cleanup", "--days", "1", "--dry-run", stdout=out)

    assert "Would remove 1 samples." in out.getvalue()
    assert Sample.objects.count() == 1
    assert not AuditLogEntry.objects.filter(object_type="retention").exists()


def test_cleanup_task_removes_what_is_older_than_the_retention():
    now = datetime.now(UTC)
    ingest_samples([SampleIn("temp", {}, 1.0, now.timestamp())], now=now)
    series_id = Sample.objects.get().series_id
    Sample.objects.create(series_id=series_id, ts=int((now - timedelta(days=31)).timestamp() * 1000), value=0.0)

    summary = cleanup_task()

    assert "removed 1 samples" in summary
    assert Sample.objects.count() == 1


def test_maintain_partitions_task_summarises():
    summary = maintain_partitions_task()

    if storage.is_postgres():
        assert summary.startswith("created ")
        today = (datetime.now(UTC).date() - date(1970, 1, 1)).days
        assert set(range(today - 30, today + storage.PARTITION_DAYS_AHEAD + 1)) <= set(storage.existing_partitions())
    else:
        assert summary == "created 0 sample partitions"
