"""Instant vectors: each series' latest sample at or before a time, within a lookback window
(Prometheus' instant query). The alert engine reads its values through here."""

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.db import connection
from django.db.models import OuterRef, Subquery

from .models import Sample, Series

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_LOOKBACK_S = 300
CHUNK = 500  # ids per IN (...) list: well under SQLite's variable limit


class InstantSample(NamedTuple):
    labels: dict[str, str]
    value: float
    ts: int  # epoch milliseconds of the sample


def epoch_ms(at: datetime) -> int:
    """`at` as integer epoch milliseconds (exact: no float rounding)."""
    return (at - EPOCH) // timedelta(milliseconds=1)


def instant_vector(
    metric: str, matchers: Mapping[str, str] | None, at: datetime, lookback_s: float = DEFAULT_LOOKBACK_S
) -> list[InstantSample]:
    """The series of `metric` whose labels match `matchers` (exact; an empty value matches a
    missing label), each with its latest sample in [at - lookback, at]; series without one
    are left out. A NaN sample is a value (stored as NULL, read back as NaN)."""
    matchers = matchers or {}
    return [
        InstantSample(dict(sample.labels), sample.value, sample.ts)  # a copy the caller may change
        for sample in instant_vectors([metric], at, lookback_s)[metric]
        if all(sample.labels.get(name, "") == value for name, value in matchers.items())
    ]


def instant_vectors(
    metrics: Iterable[str], at: datetime, lookback_s: float = DEFAULT_LOOKBACK_S
) -> dict[str, list[InstantSample]]:
    """Instant vectors of several metrics at once, by metric name (every name is a key).
    The label dicts are shared between calls: read them, never change them.

    One query over Series answers every series whose last sample is at or before `at` (the
    usual case when evaluating "now"): its last value is the answer. Only series with
    samples after `at` (a replay, a late clock) need the sample table, one query per chunk
    of them, each an index seek on (series, ts). Labels are read once per series and then
    remembered by fingerprint, so a round does not decode ten thousand JSON objects."""
    metrics = sorted(set(metrics))
    hi = epoch_ms(at)
    lo = hi - round(lookback_s * 1000)
    found: list[tuple[int, str, str, int, float | None]] = []
    for start in range(0, len(metrics), CHUNK):
        # Plain rows: values_list()'s converter call per row doubled the Python time of this
        # read (7 against 3.5 ms of CPU for 10,000 series on PostgreSQL).
        sql, params = (
            Series.objects.filter(name__in=metrics[start : start + CHUNK], last_ts__gte=lo)
            .values_list("id", "name", "fingerprint", "last_ts", "last_value")
            .query.sql_with_params()
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            found += cursor.fetchall()
    labels_of = _labels_by_fingerprint([fingerprint for _, _, fingerprint, _, _ in found])
    vectors: dict[str, list[InstantSample]] = {metric: [] for metric in metrics}
    later: dict[int, tuple[str, dict[str, str]]] = {}
    for series_id, name, fingerprint, last_ts, last_value in found:
        if fingerprint not in labels_of:
            continue  # deleted (retention) between the two queries
        if last_ts > hi:
            later[series_id] = (name, labels_of[fingerprint])
        else:
            vectors[name].append(InstantSample(labels_of[fingerprint], _float(last_value), last_ts))
    ids = list(later)
    for start in range(0, len(ids), CHUNK):
        window = Sample.objects.filter(series=OuterRef("pk"), ts__gte=lo, ts__lte=hi).order_by("-ts")
        rows = (
            Series.objects.filter(id__in=ids[start : start + CHUNK])
            .annotate(at_ts=Subquery(window.values("ts")[:1]), at_value=Subquery(window.values("value")[:1]))
            .filter(at_ts__isnull=False)
            .values_list("id", "at_ts", "at_value")
        )
        for series_id, ts, value in rows:
            name, labels = later[series_id]
            vectors[name].append(InstantSample(labels, _float(value), ts))
    return vectors


# A series' labels never change (its fingerprint is their hash), so they are decoded once
# per process. Dropped whole past LABELS_MEMO_LIMIT series.
_labels_memo: dict[str, dict[str, str]] = {}
LABELS_MEMO_LIMIT = 200_000


def _labels_by_fingerprint(fingerprints: list[str]) -> dict[str, dict[str, str]]:
    missing = [fingerprint for fingerprint in fingerprints if fingerprint not in _labels_memo]
    if len(_labels_memo) + len(missing) > LABELS_MEMO_LIMIT:
        _labels_memo.clear()
        missing = fingerprints
    for start in range(0, len(missing), CHUNK):
        _labels_memo.update(
            Series.objects.filter(fingerprint__in=missing[start : start + CHUNK]).values_list("fingerprint", "labels")
        )
    return {fingerprint: _labels_memo[fingerprint] for fingerprint in fingerprints if fingerprint in _labels_memo}


def sample_history(
    metric: str, start: datetime, end: datetime, matchers: Mapping[str, str] | None = None
) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    """Every sample in [start, end] of the series of `metric` matching `matchers`, per series
    in time order: (labels, [(ts_ms, value), ...]). For replaying rules over stored data."""
    matchers = matchers or {}
    series = {
        series_id: labels
        for series_id, labels in Series.objects.filter(name=metric, last_ts__gte=epoch_ms(start)).values_list(
            "id", "labels"
        )
        if all(labels.get(name, "") == value for name, value in matchers.items())
    }
    points: dict[int, list[tuple[int, float]]] = {series_id: [] for series_id in series}
    ids = list(series)
    for begin in range(0, len(ids), CHUNK):
        rows = (
            Sample.objects.filter(
                series_id__in=ids[begin : begin + CHUNK], ts__gte=epoch_ms(start), ts__lte=epoch_ms(end)
            )
            .order_by("series_id", "ts")
            .values_list("series_id", "ts", "value")
        )
        for series_id, ts, value in rows:
            points[series_id].append((ts, _float(value)))
    return [(series[series_id], points[series_id]) for series_id in ids if points[series_id]]


def _float(value: float | None) -> float:
    # NaN is stored as NULL (NaNFloatField); a raw or annotated read may hand back None.
    return math.nan if value is None else value
