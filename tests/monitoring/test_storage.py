"""monitoring.storage: the sample table's daily partitions on PostgreSQL (the plain table on
SQLite), partitions made ahead and on demand, and rows rescued from the DEFAULT partition."""

from datetime import UTC, date, datetime

import pytest
from django.db import connection

from monitoring import storage
from monitoring.ingest import SampleIn, ingest_samples
from monitoring.models import Sample, Series

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY = (NOW.date() - date(1970, 1, 1)).days


def rows_in(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608
        return cursor.fetchone()[0]


def is_partitioned(table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
            " WHERE c.relname = %s)",
            [table],
        )
        return cursor.fetchone()[0]


def test_sample_table_is_partitioned_by_day_only_on_postgresql():
    if storage.is_postgres():
        assert is_partitioned("monitoring_sample")
        with connection.cursor() as cursor:
            cursor.execute("SELECT relispartition FROM pg_class WHERE relname = %s", [storage.DEFAULT_PARTITION])
            assert cursor.fetchone() == (True,)
    else:
        assert connection.vendor == "sqlite"
        assert "monitoring_sample" in connection.introspection.table_names()
        assert storage.maintain_partitions(today=NOW.date(), retention_days=3) == []


def test_partition_names_round_trip():
    assert storage.partition_name(DAY) == "monitoring_sample_p20261120"
    assert storage.partition_day("monitoring_sample_p20261120") == DAY
    assert storage.partition_day("monitoring_sample_default") is None
    assert storage.partition_day("monitoring_sample_p2026112") is None


def test_maintain_partitions_covers_the_retention_window_and_days_ahead():
    if not storage.is_postgres():
        assert storage.maintain_partitions(today=NOW.date(), retention_days=3) == []
        return
    created = storage.maintain_partitions(today=NOW.date(), retention_days=3, days_ahead=2)

    days = storage.existing_partitions()
    assert set(range(DAY - 3, DAY + 3)) <= set(days)
    assert set(created) == {storage.partition_name(day) for day in range(DAY - 3, DAY + 3)}
    assert storage.maintain_partitions(today=NOW.date(), retention_days=3, days_ahead=2) == []


def test_a_sample_lands_in_the_partition_of_its_day():
    ingest_samples(
        [SampleIn("up", {}, 1.0, NOW.timestamp() - 86400), SampleIn("up", {}, 1.0, NOW.timestamp())], now=NOW
    )

    assert Sample.objects.count() == 2
    if storage.is_postgres():
        assert rows_in(storage.partition_name(DAY)) == 1
        assert rows_in(storage.partition_name(DAY - 1)) == 1
        assert rows_in(storage.DEFAULT_PARTITION) == 0


def test_rows_written_around_ingestion_are_moved_out_of_the_default_partition():
    # A direct ORM write for a day without a partition (as tests and imports do) is kept...
    series = Series.objects.create(name="up", labels={}, fingerprint="f" * 32)
    day_ms = (DAY - 5) * storage.DAY_MS
    Sample.objects.bulk_create([Sample(series=series, ts=day_ms + i, value=float(i)) for i in range(3)])
    if storage.is_postgres():
        assert rows_in(storage.DEFAULT_PARTITION) == 3

    # ...and when ingestion makes that day's partition, the rows move into it.
    ingest_samples([SampleIn("up", {}, 9.0, (day_ms + 10) / 1000)], now=NOW)

    assert sorted(Sample.objects.values_list("ts", "value")) == [
        (day_ms, 0.0),
        (day_ms + 1, 1.0),
        (day_ms + 2, 2.0),
        (day_ms + 10, 9.0),
    ]
    if storage.is_postgres():
        assert rows_in(storage.DEFAULT_PARTITION) == 0
        assert rows_in(storage.partition_name(DAY - 5)) == 4


@pytest.mark.parametrize("size", [5, storage.COPY_MIN_ROWS + 100])
def test_retried_batch_after_a_partial_overlap_stores_only_the_new_samples(size):
    # Small batches go straight to INSERT ... ON CONFLICT; on PostgreSQL a large one tries
    # COPY first, which fails on the overlap, and then takes the ON CONFLICT path.
    first = [SampleIn("up", {"i": str(i)}, float(i), NOW.timestamp()) for i in range(size)]
    second = first + [SampleIn("up", {"i": str(i)}, float(i), NOW.timestamp()) for i in range(size, size + 3)]

    ingest_samples(first, now=NOW)
    result = ingest_samples(second, now=NOW)

    assert result.accepted == size + 3
    assert Sample.objects.count() == size + 3
    assert sorted(Series.objects.values_list("last_value", flat=True)) == [float(i) for i in range(size + 3)]


def test_a_large_batch_with_a_repeated_sample_keeps_the_first():
    batch = [SampleIn("up", {"i": str(i)}, float(i), NOW.timestamp()) for i in range(storage.COPY_MIN_ROWS)]
    batch.append(SampleIn("up", {"i": "0"}, 99.0, NOW.timestamp()))

    result = ingest_samples(batch, now=NOW)

    assert result.accepted == storage.COPY_MIN_ROWS + 1
    assert Sample.objects.count() == storage.COPY_MIN_ROWS
    assert Sample.objects.get(series__labels__i="0").value == 0.0
