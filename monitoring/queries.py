"""Reads of stored metrics: series with their last value, and the points of series over a
time range, raw or in time buckets (avg/min/max) computed by the database."""

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from django.db import connection
from django.db.models import Avg, BigIntegerField, Count, ExpressionWrapper, F, Max, Min, QuerySet, Window

from .models import Sample, Series

# A range is returned raw while every series has at most this many samples in it;
# otherwise in buckets of a default step chosen to stay at or under it.
MAX_POINTS_PER_SERIES = 1000
# As Prometheus: a step that would cut one series into more buckets than this is refused.
MAX_BUCKETS_PER_SERIES = 11_000
NAN = float("nan")
# Steps that bucket boundaries fall on, so default buckets line up with the wall clock.
NICE_STEPS_SECONDS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip


class QueryError(ValueError):
    """A query that cannot be answered as asked; `parameter` names the culprit."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True)
class SeriesSelector:
    """Which series: an exact metric name (or any) and exact label matchers."""

    metric: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class SeriesInfo(NamedTuple):
    # A tuple, not a frozen dataclass: a page may hold 10,000 of these.
    id: int
    metric: str
    labels: Mapping[str, str]
    last_value: float | None
    last_ts: int | None  # epoch milliseconds


@dataclass(frozen=True)
class SeriesPage:
    count: int  # every matching series, not only this page
    series: tuple[SeriesInfo, ...]


class Point(NamedTuple):
    """A raw sample (count 1, min = max = value) or a bucket starting at `ts` whose value is
    the average of its samples."""

    ts: int  # epoch milliseconds
    value: float
    min: float
    max: float
    count: int


@dataclass(frozen=True)
class SeriesPoints:
    series: SeriesInfo
    points: tuple[Point, ...]


@dataclass(frozen=True)
class RangeResult:
    count: int  # every matching series, not only this page
    start_ms: int
    end_ms: int
    step_ms: int | None  # None: raw samples
    series: tuple[SeriesPoints, ...]


def select_series(selector: SeriesSelector) -> QuerySet:
    """The series matching `selector`, ordered by metric name then id."""
    queryset = Series.objects.all()
    if selector.metric:
        queryset = queryset.filter(name=selector.metric)
    for key, value in selector.labels.items():
        # A JSON key lookup works the same on SQLite and PostgreSQL (`contains` does not
        # exist on SQLite); label names are validated, so the key is always a plain name.
        queryset = queryset.filter(**{f"labels__{key}": value})
    return queryset.order_by("name", "id")


# A series' labels never change (with its name they are its identity, its fingerprint),
# so a process keeps them decoded: a listing then reads no JSON for series it has seen.
# Keyed by (id, fingerprint), so an id that SQLite hands out again is a different key.
_labels_cache: dict[tuple[int, str], Mapping[str, str]] = {}
LABELS_CACHE_LIMIT = 200_000


# Past this many series without cached labels, reading the page's labels again costs less
# than an IN list of their ids.
LABELS_BY_ID_LIMIT = 500


def _labels_of(keys: list[tuple[int, str]], page: QuerySet) -> dict[tuple[int, str], Mapping[str, str]]:
    """Labels of the (id, fingerprint) keys of `page`: from the cache, the rest in one query."""
    found = {key: labels for key in keys if (labels := _labels_cache.get(key)) is not None}
    missing = [key for key in keys if key not in found]
    if missing:
        if len(missing) > LABELS_BY_ID_LIMIT:
            rows = page.values_list("id", "fingerprint", "labels")
        else:
            rows = Series.objects.filter(id__in=[series_id for series_id, _ in missing]).values_list(
                "id", "fingerprint", "labels"
            )
        read = {(series_id, fingerprint): labels for series_id, fingerprint, labels in rows}
        found.update(read)
        # Another thread may clear or fill the cache meanwhile: `found` is this call's own.
        if len(_labels_cache) + len(read) > LABELS_CACHE_LIMIT:
            _labels_cache.clear()
        _labels_cache.update(read)
    return found


def list_series(selector: SeriesSelector, *, limit: int, offset: int = 0) -> SeriesPage:
    """One page of the matching series with their last value. The total comes with the
    page (a window count); labels come from a per-process cache, or one more query for the
    series not seen yet. At most three queries, whatever the page size. The page is read as
    plain rows: a model instance or a converter call per row cost 10,000 series about
    15 ms of Python, as much as the query."""
    queryset = select_series(selector)
    page = queryset[offset : offset + limit]
    sql, params = (
        page.annotate(total=Window(Count("*")))
        .values_list("id", "fingerprint", "name", "last_value", "last_ts", "total")
        .query.sql_with_params()
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    count = rows[0][-1] if rows else (queryset.count() if offset else 0)
    labels = _labels_of([(row[0], row[1]) for row in rows], page)
    # NaN is stored as NULL; a series without a last time has no last value at all. A
    # series deleted between the two queries has no labels and is left out.
    return SeriesPage(
        count,
        tuple(
            SeriesInfo(id, name, labels[id, fingerprint], None if ts is None else _nan_if_none(value), ts)
            for id, fingerprint, name, value, ts, _ in rows
            if (id, fingerprint) in labels
        ),
    )


def iter_latest(*, chunk_size: int = 5000) -> Iterator[tuple[str, Mapping[str, str], float, int]]:
    """(metric, labels, last value, last time in ms) of every series that has a sample,
    ordered by metric name, read in chunks so a large fleet is never all in memory."""
    rows = (
        Series.objects.filter(last_ts__isnull=False)
        .order_by("name", "id")
        .values_list("name", "labels", "last_value", "last_ts")
    )
    for name, labels, value, ts in rows.iterator(chunk_size=chunk_size):
        yield name, labels, _nan_if_none(value), ts


def default_step_ms(start_ms: int, end_ms: int, max_points: int = MAX_POINTS_PER_SERIES) -> int:
    """The smallest nice step (1 s, 2 s, 5 s ... 1 day, then whole days) that cuts the
    range into at most `max_points` buckets."""
    needed_seconds = max(end_ms - start_ms, 1) / 1000 / max_points
    for step in NICE_STEPS_SECONDS:
        if step >= needed_seconds:
            return step * 1000
    return math.ceil(needed_seconds / 86400) * 86400 * 1000


def _nan_if_none(value: float | None) -> float:
    return NAN if value is None else value


def _samples_in(series_ids: list[int], start_ms: int, end_ms: int) -> QuerySet:
    return Sample.objects.filter(series_id__in=series_ids, ts__gte=start_ms, ts__lte=end_ms)


def _raw_points(series_ids: list[int], start_ms: int, end_ms: int) -> dict[int, list[Point]]:
    points: dict[int, list[Point]] = {series_id: [] for series_id in series_ids}
    rows = _samples_in(series_ids, start_ms, end_ms).order_by("series_id", "ts").values_list("series_id", "ts", "value")
    for series_id, ts, value in rows:
        value = NAN if value is None else value
        points[series_id].append(Point(ts, value, value, value, 1))
    return points


def _bucketed_points(series_ids: list[int], start_ms: int, end_ms: int, step_ms: int) -> dict[int, list[Point]]:
    # Integer division truncates on both SQLite and PostgreSQL (ts is a positive BIGINT),
    # so a bucket is [k*step, (k+1)*step) and its start is the same whatever the range.
    bucket = ExpressionWrapper(F("ts") / step_ms * step_ms, output_field=BigIntegerField())
    rows = (
        _samples_in(series_ids, start_ms, end_ms)
        .annotate(bucket=bucket)
        .values("series_id", "bucket")
        .annotate(avg=Avg("value"), low=Min("value"), high=Max("value"), n=Count("*"))
        .order_by("series_id", "bucket")
        .values_list("series_id", "bucket", "avg", "low", "high", "n")
    )
    points: dict[int, list[Point]] = {series_id: [] for series_id in series_ids}
    for series_id, start, avg, low, high, n in rows:
        # NaN is stored as NULL, which the aggregates skip: a bucket of NaN alone is NaN.
        points[series_id].append(Point(start, _nan_if_none(avg), _nan_if_none(low), _nan_if_none(high), n))
    return points


def _largest_sample_count(series_ids: list[int], start_ms: int, end_ms: int) -> int:
    counts = (
        _samples_in(series_ids, start_ms, end_ms)
        .values("series_id")
        .annotate(n=Count("*"))
        .order_by()
        .values_list("n", flat=True)
    )
    return max(counts, default=0)


def query_range(
    selector: SeriesSelector,
    *,
    start_ms: int,
    end_ms: int,
    step_ms: int | None = None,
    limit: int,
    offset: int = 0,
    max_points: int = MAX_POINTS_PER_SERIES,
) -> RangeResult:
    """The points of one page of matching series between `start_ms` and `end_ms` (both
    included).

    With `step_ms`, always buckets of that size. Without it, raw samples while no series
    has more than `max_points` in the range, else buckets of `default_step_ms`. The number
    of queries (the page, labels not cached yet, a sample count without a step, the points)
    does not depend on the number of series."""
    if end_ms <= start_ms:
        raise QueryError("end", "end must be after start.")
    if step_ms is not None:
        if step_ms <= 0:
            raise QueryError("step", "step must be positive.")
        if (end_ms - start_ms) / step_ms > MAX_BUCKETS_PER_SERIES:
            raise QueryError(
                "step",
                f"step is too small for the range: at most {MAX_BUCKETS_PER_SERIES} points per series; "
                f"use a step of at least {math.ceil((end_ms - start_ms) / MAX_BUCKETS_PER_SERIES / 1000)} s.",
            )
    page = list_series(selector, limit=limit, offset=offset)
    ids = [info.id for info in page.series]
    if not ids:
        return RangeResult(page.count, start_ms, end_ms, step_ms, ())
    if step_ms is None and _largest_sample_count(ids, start_ms, end_ms) > max_points:
        step_ms = default_step_ms(start_ms, end_ms, max_points)
    if step_ms is None:
        points = _raw_points(ids, start_ms, end_ms)
    else:
        points = _bucketed_points(ids, start_ms, end_ms, step_ms)
    return RangeResult(
        page.count,
        start_ms,
        end_ms,
        step_ms,
        tuple(SeriesPoints(info, tuple(points[info.id])) for info in page.series),
    )
