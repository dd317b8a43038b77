"""Reads the series and samples a selector needs, filtering in SQL: the metric name and
exact label values narrow the series, the time window and series ids the samples, so
each selector costs one series query and one sample query per request, whatever the
number of steps. Regex and negative matchers are applied to the (few) series in Python."""

import time
from dataclasses import dataclass

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, QuerySet, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from psycopg import errors as pg_errors

from monitoring.models import Sample, Series

from .ast import Matcher, MatchOp, VectorSelector
from .errors import ExecutionError, QueryTimeout

CHUNK = 500  # series ids per IN (...) list on SQLite: well under its variable limit
PG_CHUNK = 1000  # series per statement on PostgreSQL
_PACKED_SAMPLE = np.dtype([("ts", ">i8"), ("value", ">f8")])  # int8send(ts) || float8send(value)
_SQLITE_ROW = np.dtype([("series_id", "<i8"), ("ts", "<i8"), ("value", "<f8"), ("null", "?")])


@dataclass(frozen=True, slots=True)
class SeriesData:
    """One series' samples in a window: labels include `__name__`; ts in epoch ms, ascending."""

    labels: dict[str, str]
    ts: np.ndarray  # int64
    values: np.ndarray  # float64, NaN for a NaN sample


@dataclass(frozen=True, slots=True)
class SeriesRow:
    id: int
    labels: dict[str, str]
    last_ts: int
    last_value: float


def max_samples() -> int:
    return settings.PROMQL_MAX_SAMPLES


def series_in_time(since_ms: int | None, until_ms: int | None = None) -> QuerySet:
    """Series with a sample in [since_ms, until_ms] (either end open when None). The last
    sample's time answers "since" alone; an upper bound needs a look at the samples (an
    index seek per series)."""
    queryset = Series.objects.filter(last_ts__isnull=False)
    if since_ms is not None:
        queryset = queryset.filter(last_ts__gte=since_ms)
    if until_ms is not None:
        window = Sample.objects.filter(series=OuterRef("pk"), ts__lte=until_ms)
        if since_ms is not None:
            window = window.filter(ts__gte=since_ms)
        queryset = queryset.filter(Exists(window))
    return queryset


def find_series(selector: VectorSelector, *, since_ms: int | None, until_ms: int | None = None) -> list[SeriesRow]:
    """The series matching every matcher of `selector` that have a sample in
    [since_ms, until_ms], ordered by id."""
    queryset = series_in_time(since_ms, until_ms)
    if selector.name is not None:
        queryset = queryset.filter(name=selector.name)
    for index, matcher in enumerate(selector.matchers):
        # Exact non-empty values are pushed into SQL (an empty value also matches series that
        # lack the label, which only Python can tell). An explicit text transform and not a
        # `labels__<name>` lookup: a label called `contains` or `in` would be taken for one;
        # the cast makes the comparison a plain text one (not JSON's) on both databases.
        if matcher.op is MatchOp.EQUAL and matcher.value and matcher.name != "__name__":
            alias = f"promql_label_{index}"
            value = Cast(KeyTextTransform(matcher.name, "labels"), output_field=TextField())
            queryset = queryset.alias(**{alias: value}).filter(**{alias: matcher.value})
    rows = []
    for series_id, name, labels, last_ts, last_value in queryset.order_by("id").values_list(
        "id", "name", "labels", "last_ts", "last_value"
    ):
        full = {"__name__": name, **labels}
        if _matches(selector.matchers, full):
            rows.append(SeriesRow(series_id, full, last_ts, last_value))
    return rows


def _matches(matchers: tuple[Matcher, ...], labels: dict[str, str]) -> bool:
    for matcher in matchers:  # noqa: SIM110 (a plain loop: it runs for every series)
        if not matcher.matches(labels.get(matcher.name, "")):
            return False
    return True


def load_samples(series_ids: list[int], lo_ms: int, hi_ms: int, *, deadline: float, limit: int) -> tuple[
    np.ndarray, np.ndarray, np.ndarray
]:  # fmt: skip
    """(series ids, timestamps, values) of every sample of `series_ids` in [lo_ms, hi_ms],
    each series' samples together and in time order: one statement per 1,000 series on
    PostgreSQL, per 500 on SQLite. More than `limit` samples is an ExecutionError, a
    statement running past `deadline` a QueryTimeout.

    Samples are stored in arrival order, so one series' samples are spread over many pages:
    the database reads them with a scan and sorts them (or NumPy does, on SQLite), rather
    than in index order, which costs a page visit per sample."""
    if not series_ids:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float64)
    if connection.vendor == "postgresql":
        return _load_postgres(series_ids, lo_ms, hi_ms, deadline=deadline, limit=limit)
    ids, stamps, values = _load_sqlite(series_ids, lo_ms, hi_ms, deadline=deadline, limit=limit)
    order = np.lexsort((stamps, ids))
    return ids[order], stamps[order], values[order]


def _too_many(limit: int) -> ExecutionError:
    return ExecutionError(
        f"query processing would load too many samples into memory in query execution (limit {limit:,}; "
        "narrow the selector or the time range)"
    )


def _remaining_ms(deadline: float) -> int:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise QueryTimeout("query timed out in query execution")
    return max(1, int(remaining * 1000))


def _load_postgres(
    series_ids: list[int], lo_ms: int, hi_ms: int, *, deadline: float, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # One row per series whose (time, value) pairs the database packs into big-endian bytes
    # (int8send/float8send), which NumPy reads in one call: a row per sample (even through
    # COPY, which sends each row as its own message) costs ten times more in Python. The
    # aggregate does not sort (a sort of every sample spilled to disk and tripled the
    # statement's time): rows come in storage order, which is nearly time order, and NumPy
    # sorts each series. NaN is stored as NULL and comes back as NaN. Series go in chunks
    # so that a query over too many samples stops after one chunk past the limit.
    # A psycopg cursor of its own: Django's binds parameters on the client, in text.
    ids_parts: list[np.ndarray] = []
    stamps_parts: list[np.ndarray] = []
    values_parts: list[np.ndarray] = []
    total = 0
    connection.ensure_connection()
    try:
        # The statement is bounded by the query's deadline. SET LOCAL lasts until the end of
        # the transaction: inside a caller's transaction it is reset, or rolled back with the
        # savepoint when the statement fails.
        with transaction.atomic(), psycopg.Cursor(connection.connection) as cursor:
            for start in range(0, len(series_ids), PG_CHUNK):
                cursor.execute(f"SET LOCAL statement_timeout = {_remaining_ms(deadline)}")
                cursor.execute(
                    """
                    SELECT series_id, count(*),
                           string_agg(int8send(ts) || float8send(COALESCE(value, 'NaN'::float8)), ''::bytea)
                    FROM monitoring_sample
                    WHERE series_id = ANY(%s::int8[]) AND ts BETWEEN %s AND %s
                    GROUP BY series_id
                    """,
                    [series_ids[start : start + PG_CHUNK], lo_ms, hi_ms],
                    binary=True,  # bytea as raw bytes, not hex text
                )
                for series_id, count, packed in cursor.fetchall():
                    total += count
                    pairs = np.frombuffer(packed, dtype=_PACKED_SAMPLE)
                    stamps = pairs["ts"].astype(np.int64)
                    values = pairs["value"].astype(np.float64)
                    if count > 1 and not (stamps[1:] > stamps[:-1]).all():
                        order = np.argsort(stamps, kind="stable")
                        stamps, values = stamps[order], values[order]
                    ids_parts.append(np.full(count, series_id, dtype=np.int64))
                    stamps_parts.append(stamps)
                    values_parts.append(values)
                if total > limit:
                    raise _too_many(limit)
            cursor.execute("SET LOCAL statement_timeout TO DEFAULT")
    except pg_errors.QueryCanceled:
        raise QueryTimeout("query timed out in query execution") from None
    if not ids_parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float64)
    return np.concatenate(ids_parts), np.concatenate(stamps_parts), np.concatenate(values_parts)


def _load_sqlite(
    series_ids: list[int], lo_ms: int, hi_ms: int, *, deadline: float, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Rows go straight into one structured array (np.fromiter, a C loop): unzipping 144,100
    # row tuples into three arrays in Python took ten times longer than the read. NaN is
    # stored as NULL, which no NumPy number takes: the row says whether its value is NULL.
    parts: list[np.ndarray] = []
    total = 0
    with connection.cursor() as cursor:
        for start in range(0, len(series_ids), CHUNK):
            _remaining_ms(deadline)
            chunk = series_ids[start : start + CHUNK]
            placeholders = ",".join(["%s"] * len(chunk))
            cursor.execute(
                "SELECT series_id, ts, IFNULL(value, 0.0), value IS NULL FROM monitoring_sample "  # noqa: S608
                f"WHERE series_id IN ({placeholders}) AND ts BETWEEN %s AND %s LIMIT %s",
                [*chunk, lo_ms, hi_ms, limit + 1 - total],
            )
            rows = cursor.fetchall()
            parts.append(np.fromiter(rows, dtype=_SQLITE_ROW, count=len(rows)))
            total += len(rows)
            if total > limit:
                raise _too_many(limit)
    if not total:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float64)
    records = np.concatenate(parts)
    return records["series_id"], records["ts"], np.where(records["null"], np.nan, records["value"])


def select(selector: VectorSelector, lo_ms: int, hi_ms: int, *, deadline: float, limit: int,
           latest_at: int | None = None) -> list[SeriesData]:  # fmt: skip
    """The samples in [lo_ms, hi_ms] of each series matching `selector` (series without
    any are left out). With `latest_at` (an instant selector at one time), a series whose
    last sample is at or before that time is answered from its stored last value, and only
    the others need the sample table: evaluating "now" reads no samples at all."""
    rows = find_series(selector, since_ms=lo_ms)
    found: list[SeriesData] = []
    to_read: list[SeriesRow] = []
    for row in rows:
        if latest_at is not None and row.last_ts <= latest_at:
            if row.last_ts <= hi_ms:
                found.append(SeriesData(row.labels, np.array([row.last_ts], dtype=np.int64),
                                        np.array([row.last_value], dtype=np.float64)))  # fmt: skip
        else:
            to_read.append(row)
    ids, stamps, values = load_samples([row.id for row in to_read], lo_ms, hi_ms, deadline=deadline, limit=limit)
    if len(ids):
        # Each series' rows are together: cut the arrays where the id changes.
        cuts = np.flatnonzero(np.diff(ids)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [len(ids)]))
        by_id = {int(ids[start]): (start, end) for start, end in zip(starts, ends, strict=True)}
        for row in to_read:
            span = by_id.get(row.id)
            if span is not None:
                found.append(SeriesData(row.labels, stamps[span[0] : span[1]], values[span[0] : span[1]]))
    return found
