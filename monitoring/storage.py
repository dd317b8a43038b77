"""Bulk writes of series and samples, one implementation per database: PostgreSQL (array
parameters, daily partitions of the sample table) and SQLite (executemany, JSON arrays)."""

import json
import logging
import struct
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import partial

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from psycopg import errors as pg_errors

log = logging.getLogger("ingest")

DAY_MS = 86_400_000
SAMPLE_TABLE = "monitoring_sample"
PARTITION_PREFIX = "monitoring_sample_p"
# Catches rows of days without a partition (migration 0006); ensure_partitions moves them out.
DEFAULT_PARTITION = "monitoring_sample_default"
# Partitions are made this many days ahead, so ingestion never waits for one.
PARTITION_DAYS_AHEAD = 7


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _pg_cursor() -> CursorWrapper:
    """A cursor on Django's connection (same transaction) that binds parameters on the
    server: Django's client-side binding quotes a 10,000-element array as text, which costs
    more than the insert it feeds. Wrapped as Django wraps its own, so the statements are
    counted and logged like every other query (tests assert the count per batch)."""
    connection.ensure_connection()
    cursor = psycopg.Cursor(connection.connection)
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)


def relax_commit() -> None:
    """In a transaction of samples only: on PostgreSQL, commit without waiting for the WAL
    flush unless MONITORING_INGEST_SYNCHRONOUS_COMMIT. A flush costs 5-15 ms here, more than
    a small push's work; a database crash loses at most the last ~0.6 s of samples."""
    if is_postgres() and not settings.MONITORING_INGEST_SYNCHRONOUS_COMMIT:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")


def resolve_series(wanted: Mapping[str, tuple[str, dict[str, str]]], *, created_at: datetime) -> dict[str, int]:
    """The id of every series in `wanted` (fingerprint -> (name, labels)), creating those
    that do not exist yet. Safe against a concurrent writer creating the same series."""
    fingerprints = sorted(wanted)  # one lock order for every writer: no deadlock between two
    names = [wanted[fp][0] for fp in fingerprints]
    labels = [json.dumps(wanted[fp][1], separators=(",", ":")) for fp in fingerprints]
    ids: dict[str, int] = {}
    if is_postgres():
        with _pg_cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO monitoring_series (name, labels, fingerprint, created_at)
                SELECT n, l::jsonb, f, %s FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(n, l, f)
                ON CONFLICT (fingerprint) DO NOTHING
                RETURNING fingerprint, id
                """,
                [created_at, names, labels, fingerprints],
            )
            ids.update(cursor.fetchall())
            rest = [fp for fp in fingerprints if fp not in ids]
            if rest:
                cursor.execute("SELECT fingerprint, id FROM monitoring_series WHERE fingerprint = ANY(%s)", [rest])
                ids.update(cursor.fetchall())
        return ids
    created = connection.ops.adapt_datetimefield_value(created_at)
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT OR IGNORE INTO monitoring_series (name, labels, fingerprint, created_at) VALUES (%s, %s, %s, %s)",
            [(name, label, fp, created) for name, label, fp in zip(names, labels, fingerprints, strict=True)],
        )
        cursor.execute(
            "SELECT fingerprint, id FROM monitoring_series WHERE fingerprint IN (SELECT value FROM json_each(%s))",
            [json.dumps(fingerprints)],
        )
        ids.update(cursor.fetchall())
    return ids


def insert_samples(series_ids: list[int], timestamps: list[int], values: list[float | None]) -> None:
    """Insert samples, skipping any (series, ts) already stored or repeated in the batch:
    the first one stored wins, so a retried batch changes nothing."""
    if not is_postgres():
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT OR IGNORE INTO monitoring_sample (series_id, ts, value) VALUES (%s, %s, %s)",
                list(zip(series_ids, timestamps, values, strict=True)),
            )
        return
    # A day without its partition would land in the DEFAULT partition; make it instead.
    ensure_partitions(range(day_of(min(timestamps)), day_of(max(timestamps)) + 1))
    _insert_samples_postgres(series_ids, timestamps, values)


# Below this many samples a batch skips COPY (see _insert_samples_postgres).
COPY_MIN_ROWS = 500
# COPY's binary format: a header, then per row the field count and each field as its
# length and big-endian bytes (length -1: NULL), then a -1 trailer.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_COPY_ROW = struct.Struct(">hiqiqid").pack
_COPY_ROW_NULL_VALUE = struct.Struct(">hiqiqi").pack
# The same row as a packed NumPy record: a batch without NULL values is laid out in one go.
_COPY_RECORD = np.dtype(
    [("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("ts_len", ">i4"), ("ts", ">i8"), ("value_len", ">i4"),
     ("value", ">f8")]
)  # fmt: skip


def _copy_data(series_ids: list[int], timestamps: list[int], values: list[float | None]) -> bytes:
    # NumPy lays out a batch without NULLs at about 0.14 us a row, less than half of struct's
    # pack per row (measured on 10,000 rows); a NULL (a NaN) needs the row packer.
    if None not in values:
        records = np.empty(len(series_ids), _COPY_RECORD)
        records["fields"] = 3
        records["id_len"] = records["ts_len"] = records["value_len"] = 8
        records["id"] = series_ids
        records["ts"] = timestamps
        records["value"] = values
        return b"".join([_COPY_HEADER, records.tobytes(), _COPY_TRAILER])
    rows = [
        _COPY_ROW(3, 8, series_id, 8, ts, 8, value)
        if value is not None
        else _COPY_ROW_NULL_VALUE(3, 8, series_id, 8, ts, -1)
        for series_id, ts, value in zip(series_ids, timestamps, values, strict=True)
    ]
    return b"".join([_COPY_HEADER, *rows, _COPY_TRAILER])


def pg_array(items: list[int] | list[float | None]) -> str:
    """A PostgreSQL array literal of numbers (None: NULL; inf, -inf and nan as Python
    spells them, which PostgreSQL reads). repr() of a whole list runs in C: psycopg's
    list adapter costs about 1 us per element in Python."""
    return "{" + repr(items)[1:-1].replace("None", "NULL") + "}"


def _insert_samples_postgres(series_ids: list[int], timestamps: list[int], values: list[float | None]) -> None:
    # COPY straight into the table is the fast path. It fails as a whole on the first sample
    # already stored (a retried batch) or repeated in the batch; only then the batch goes
    # through INSERT ... ON CONFLICT DO NOTHING, which costs about twice as much per row.
    # A small batch (a device's push) goes there at once: the savepoint that COPY needs
    # costs two round trips more than the rows save.
    if len(series_ids) < COPY_MIN_ROWS:
        _insert_samples_on_conflict(series_ids, timestamps, values)
        return
    try:
        with (
            transaction.atomic(),
            _pg_cursor() as cursor,
            cursor.copy("COPY monitoring_sample (series_id, ts, value) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.write(_copy_data(series_ids, timestamps, values))
        return
    except pg_errors.UniqueViolation:
        pass
    _insert_samples_on_conflict(series_ids, timestamps, values)


def _insert_samples_on_conflict(series_ids: list[int], timestamps: list[int], values: list[float | None]) -> None:
    with _pg_cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO monitoring_sample (series_id, ts, value)
            SELECT * FROM unnest(%s::int8[], %s::int8[], %s::float8[])
            ON CONFLICT DO NOTHING
            """,
            [pg_array(series_ids), pg_array(timestamps), pg_array(values)],
        )


def update_last_values(series_ids: list[int], timestamps: list[int], values: list[float | None]) -> set[int]:
    """Move each series' last value and time to the given sample where it is strictly newer
    (one sample per series, ids in ascending order: every writer locks rows in the same
    order). Returns the ids of the given series that do not exist (a stale cache), normally
    none; that costs one more query only when some rows were not moved (a retry, late data)."""
    if is_postgres():
        with _pg_cursor() as cursor:
            # One statement for the batch; a row not newer is not written at all, so a
            # retried batch costs no row versions.
            cursor.execute(
                """
                UPDATE monitoring_series AS s SET last_value = v.value, last_ts = v.ts
                FROM unnest(%s::int8[], %s::int8[], %s::float8[]) AS v(id, ts, value)
                WHERE s.id = v.id AND (s.last_ts IS NULL OR s.last_ts < v.ts)
                """,
                [pg_array(series_ids), pg_array(timestamps), pg_array(values)],
            )
            if cursor.rowcount == len(series_ids):
                return set()
            cursor.execute("SELECT id FROM monitoring_series WHERE id = ANY(%s::int8[])", [pg_array(series_ids)])
            return set(series_ids) - {row[0] for row in cursor.fetchall()}
    with connection.cursor() as cursor:
        # executemany of a one-row UPDATE ran as fast here as one UPDATE ... FROM json_each.
        cursor.executemany(
            "UPDATE monitoring_series SET last_value = %s, last_ts = %s"
            " WHERE id = %s AND (last_ts IS NULL OR last_ts < %s)",
            [(value, ts, series_id, ts) for series_id, ts, value in zip(series_ids, timestamps, values, strict=True)],
        )
        if cursor.rowcount == len(series_ids):
            return set()
        cursor.execute(
            "SELECT id FROM monitoring_series WHERE id IN (SELECT value FROM json_each(%s))",
            [json.dumps(series_ids)],
        )
        return set(series_ids) - {row[0] for row in cursor.fetchall()}


# --- PostgreSQL daily partitions ---------------------------------------------------------

# Days (epoch day numbers) known to have a partition, so a batch checks them without a query.
_known_days: set[int] = set()


def day_of(ms: int) -> int:
    return ms // DAY_MS


def partition_name(day: int) -> str:
    return f"{PARTITION_PREFIX}{(date(1970, 1, 1) + timedelta(days=day)):%Y%m%d}"


def partition_day(name: str) -> int | None:
    """The epoch day of a partition named by partition_name(), or None for another table."""
    digits = name[len(PARTITION_PREFIX) :]
    if not name.startswith(PARTITION_PREFIX) or len(digits) != 8 or not digits.isdigit():
        return None
    try:
        day = datetime.strptime(digits, "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None
    return (day - date(1970, 1, 1)).days


def existing_partitions() -> dict[int, str]:
    """Epoch day -> name of every daily partition of the sample table."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = %s AND p.relnamespace = to_regnamespace(current_schema())::oid
            """,
            [SAMPLE_TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    return {day: name for name in names if (day := partition_day(name)) is not None}


def ensure_partitions(days: Iterable[int]) -> list[str]:
    """Create the daily partitions of these days that do not exist; returns the names created.

    A partition is made as a plain table, given the day's rows that had landed in the
    DEFAULT partition, and attached: that locks the sample table only in SHARE UPDATE
    EXCLUSIVE mode, so inserts and queries go on (CREATE TABLE ... PARTITION OF would take
    an ACCESS EXCLUSIVE lock on it)."""
    wanted = set(days) - _known_days
    if not wanted:
        return []
    existing = existing_partitions()
    created = []
    for day in sorted(wanted - set(existing)):
        name = partition_name(day)
        low, high = day * DAY_MS, (day + 1) * DAY_MS
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {name} (LIKE {SAMPLE_TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            cursor.execute(
                f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE ts >= %s AND ts < %s"  # noqa: S608
                f" RETURNING series_id, ts, value) INSERT INTO {name} (series_id, ts, value) SELECT * FROM moved",
                [low, high],
            )
            cursor.execute(f"ALTER TABLE {SAMPLE_TABLE} ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})")
        created.append(name)
    if created:
        log.info("created sample partitions %s", ", ".join(created))
    transaction.on_commit(partial(_remember_days, wanted | set(existing)))
    return created


def _remember_days(days: set[int]) -> None:
    # Remembered once committed: a rolled-back CREATE leaves no partition behind. Callbacks
    # run inside a still-open atomic block only when a test runs captured ones by hand.
    if not connection.in_atomic_block:
        _known_days.update(days)


def forget_partition(day: int) -> None:
    """This process stops believing in the partition of `day` (it was dropped)."""
    _known_days.discard(day)


def maintain_partitions(*, today: date, retention_days: int, days_ahead: int = PARTITION_DAYS_AHEAD) -> list[str]:
    """Make sure every day that ingestion accepts has its partition: from the oldest day
    inside the retention to `days_ahead` days after today. Does nothing on SQLite."""
    if not is_postgres():
        return []
    first = (today - date(1970, 1, 1)).days - retention_days
    last = (today - date(1970, 1, 1)).days + days_ahead
    with transaction.atomic():
        return ensure_partitions(range(first, last + 1))
