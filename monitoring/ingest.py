"""The one ingestion path: every metric source hands its samples to `ingest_samples`, which
validates them by Prometheus's rules, stores the good ones in bulk and tells the alert
engine and the dashboard which metrics changed."""

import hashlib
import logging
import math
import re
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial

import numpy as np
from django.db import connection, transaction
from django.db.models.signals import post_save
from django.utils import timezone
from prometheus_client import Counter, Histogram

from . import storage
from .models import GlobalSettings

log = logging.getLogger("ingest")

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_LABELS = 32
MAX_LABEL_VALUE_BYTES = 1024
MAX_METRIC_NAME_LENGTH = 200  # Series.name
MAX_FUTURE_MS = 10 * 60 * 1000
# Past this many cached label sets (a label with unbounded values), the cache starts over.
SERIES_CACHE_LIMIT = 500_000


class RejectReason(StrEnum):
    """Why a sample was not stored; the `reason` of a Rejection and a label of the
    rejected-samples counter."""

    INVALID_SAMPLE = "invalid_sample"  # not an object with the fields of a sample (push API)
    INVALID_METRIC_NAME = "invalid_metric_name"
    METRIC_NAME_TOO_LONG = "metric_name_too_long"
    INVALID_LABELS = "invalid_labels"
    INVALID_LABEL_NAME = "invalid_label_name"
    RESERVED_LABEL_NAME = "reserved_label_name"
    INVALID_LABEL_VALUE = "invalid_label_value"
    LABEL_VALUE_TOO_LONG = "label_value_too_long"
    TOO_MANY_LABELS = "too_many_labels"
    INVALID_VALUE = "invalid_value"
    INVALID_TIMESTAMP = "invalid_timestamp"
    TOO_OLD = "too_old"
    TOO_FAR_IN_FUTURE = "too_far_in_future"


@dataclass(frozen=True)
class SampleIn:
    metric: str
    labels: Mapping[str, str]
    value: float
    timestamp: float | None = None  # epoch seconds; None = now


@dataclass(frozen=True)
class Rejection:
    index: int
    reason: str


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    rejected: tuple[Rejection, ...]
    changed_metrics: frozenset[str]


@dataclass(frozen=True)
class IngestStats:
    """This process's ingestion counters since it started."""

    accepted: int
    rejected: Mapping[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0


# Process-local counters; /metrics exposes them (through the default prometheus_client
# registry, or ingest_stats() for a plain snapshot).
SAMPLES_ACCEPTED = Counter("monitoring_ingest_samples_accepted", "Samples accepted by the ingestion path.")
SAMPLES_REJECTED = Counter(
    "monitoring_ingest_samples_rejected", "Samples rejected by the ingestion path, by reason.", ["reason"]
)
BATCH_SECONDS = Histogram(
    "monitoring_ingest_batch_duration_seconds",
    "Time to validate and store one batch of samples.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_stats_lock = threading.Lock()
_stats = {"accepted": 0, "batches": 0, "seconds": 0.0}
_rejected_by_reason: Tally = Tally()


def ingest_stats() -> IngestStats:
    with _stats_lock:
        return IngestStats(
            accepted=_stats["accepted"],
            rejected=dict(_rejected_by_reason),
            batches=_stats["batches"],
            seconds=_stats["seconds"],
        )


def series_fingerprint(name: str, labels: Mapping[str, str]) -> str:
    """The stable identity of a series: 32 hex characters of BLAKE2b over the name and the
    sorted labels. 0xFF and 0xFE never occur in UTF-8, so no two label sets encode alike."""
    digest = hashlib.blake2b(name.encode(), digest_size=16)
    for key, value in sorted(labels.items()):
        digest.update(b"\xff" + key.encode() + b"\xfe" + value.encode())
    return digest.hexdigest()


def check_series(metric: object, labels: object) -> RejectReason | None:
    """Decide whether a metric name and label set are valid by Prometheus's rules: the
    name matches [a-zA-Z_:][a-zA-Z0-9_:]*, label names match [a-zA-Z_][a-zA-Z0-9_]* and do
    not start with "__" (reserved), at most 32 labels, values strings of at most 1 KiB."""
    if not isinstance(metric, str) or not METRIC_NAME_RE.fullmatch(metric):
        return RejectReason.INVALID_METRIC_NAME
    if len(metric) > MAX_METRIC_NAME_LENGTH:
        return RejectReason.METRIC_NAME_TOO_LONG
    if not isinstance(labels, Mapping):
        return RejectReason.INVALID_LABELS
    if len(labels) > MAX_LABELS:
        return RejectReason.TOO_MANY_LABELS
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_NAME_RE.fullmatch(key):
            return RejectReason.INVALID_LABEL_NAME
        if key.startswith("__"):
            return RejectReason.RESERVED_LABEL_NAME
        if not isinstance(value, str):
            return RejectReason.INVALID_LABEL_VALUE
        if len(value) > MAX_LABEL_VALUE_BYTES // 4 and len(value.encode()) > MAX_LABEL_VALUE_BYTES:
            return RejectReason.LABEL_VALUE_TOO_LONG
    return None


def normalize_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels as stored: sorted, and without empty values (in Prometheus `{a=""}` is the
    same series as no label `a`)."""
    return {key: value for key, value in sorted(labels.items()) if value != ""}


# (metric, label items in the order given) -> series id. Filled only after the transaction
# that found or created the ids commits, and checked against the table on every batch.
_series_cache: dict[tuple, int] = {}


def _remember_series(found: dict[tuple, int]) -> None:
    # Callbacks run inside the still-open atomic block only when a test captures and runs
    # them by hand; those ids are about to be rolled back (and SQLite would hand them out
    # again), so they must not be cached.
    if connection.in_atomic_block:
        return
    if len(_series_cache) + len(found) > SERIES_CACHE_LIMIT:
        _series_cache.clear()
    _series_cache.update(found)


def forget_series(series_ids: set[int]) -> None:
    """Drop cached ids of series that no longer exist (deleted by hand or by cleanup)."""
    for key in [key for key, series_id in _series_cache.items() if series_id in series_ids]:
        _series_cache.pop(key, None)


class _StaleSeriesCache(Exception):
    def __init__(self, missing: set[int]):
        super().__init__(f"{len(missing)} cached series no longer exist")
        self.missing = missing


_retention = {"days": 0, "read_at": -math.inf}
# Outside a transaction the retention is read at most this often per process (a query per
# batch costs more than a small batch); saving the global settings in this process
# refreshes it at once. Inside a caller's transaction it is read as that transaction sees
# it (which may be about to roll back, as in tests).
RETENTION_REFRESH_S = 10.0


def _retention_days() -> int:
    if connection.in_atomic_block:
        return GlobalSettings.load().retention_days
    if time.monotonic() - _retention["read_at"] > RETENTION_REFRESH_S:
        _retention["days"] = GlobalSettings.load().retention_days
        _retention["read_at"] = time.monotonic()
    return _retention["days"]


def _forget_retention(**kwargs: object) -> None:
    _retention["read_at"] = -math.inf


post_save.connect(_forget_retention, sender=GlobalSettings, dispatch_uid="monitoring-ingest-retention")


def _notify_alert_engine(changed: frozenset[str]) -> None:
    from alerts import triggers  # alerts imports monitoring: import at call time

    triggers.on_metrics_changed(changed)


def _publish_metrics_changed(changed: frozenset[str]) -> None:
    from dashboard.publish import publish_metrics_changed  # at most once a second per metric

    publish_metrics_changed(changed)


def _count_stored(accepted: int) -> None:
    from .watchdog import count_ingested  # the watchdog's ingestion rate, shared by every process

    count_ingested(accepted)


def _reject(rejections: list[Rejection], index: int, reason: RejectReason) -> None:
    rejections.append(Rejection(index, reason.value))


def ingest_samples(samples: Sequence[SampleIn], *, now: datetime | None = None) -> IngestResult:
    """Validate a batch and store its good samples. A sample is rejected (with its index
    and reason) for a bad name or labels, a value that is not a number, a timestamp that is
    not finite, older than the retention or more than 10 minutes ahead of `now`. Storing a
    sample whose series and timestamp are already stored changes nothing, so a retried
    batch is harmless; it counts as accepted again. After the commit the alert engine and
    the dashboard's Metrics pages hear which metrics changed."""
    started = time.perf_counter()
    if not isinstance(samples, Sequence):
        samples = list(samples)  # a stale series cache makes validation read it twice
    now = now or timezone.now()
    now_ms = int(now.timestamp() * 1000)
    window = (now_ms - _retention_days() * 86_400_000, now_ms + MAX_FUTURE_MS)

    batch = _validate(samples, now_ms, window)
    if batch.refs:
        try:
            _store(batch)
        except _StaleSeriesCache as exc:
            log.info("%s; resolving them again", exc)
            forget_series(exc.missing)
            batch = _validate(samples, now_ms, window)
            _store(batch)
        transaction.on_commit(partial(_notify_alert_engine, batch.metrics), robust=True)
        transaction.on_commit(partial(_publish_metrics_changed, batch.metrics), robust=True)
        transaction.on_commit(partial(_count_stored, len(batch.refs)), robust=True)

    accepted, rejections = len(batch.refs), batch.rejections
    elapsed = time.perf_counter() - started
    _count(accepted, rejections, elapsed)
    if rejections:
        reasons = Tally(rejection.reason for rejection in rejections)
        log.info(
            "stored %d of %d samples; rejected %s",
            accepted,
            len(samples),
            ", ".join(f"{reason}={count}" for reason, count in sorted(reasons.items())),
        )
    else:
        log.debug("stored %d samples in %.1f ms", accepted, elapsed * 1000)
    return IngestResult(accepted=accepted, rejected=tuple(rejections), changed_metrics=batch.metrics)


@dataclass
class _Batch:
    """The accepted samples of a batch, column by column. A ref is the series id when the
    cache knows it, else the (metric, label items) cache key, resolved by _store()."""

    refs: list[int | tuple]
    timestamps: list[int]
    values: list[float | None]
    metrics: frozenset[str]
    rejections: list[Rejection]


def _validate(samples: Sequence[SampleIn], now_ms: int, window: tuple[int, int]) -> _Batch:
    # The hot loop: about 1 us per sample when the series is cached. Nothing per sample is
    # kept but numbers (and the key of an uncached series): tuples kept for the whole batch
    # would drive the garbage collector into full collections of the whole process.
    oldest_ms, newest_ms = window
    inf = math.inf
    rejections: list[Rejection] = []
    refs: list[int | tuple] = []
    timestamps: list[int] = []
    values: list[float | None] = []
    metrics: set[str] = set()
    cache_get = _series_cache.get

    for index, sample in enumerate(samples):
        metric = sample.metric
        labels = sample.labels
        try:
            key = (metric, tuple(labels.items()))
            ref = cache_get(key)
        except (AttributeError, TypeError):  # labels not a mapping, or unhashable values
            key = ref = None
        if ref is None:
            reason = check_series(metric, labels)
            if reason is not None:
                _reject(rejections, index, reason)
                continue
            ref = key

        value = sample.value
        kind = type(value)
        if kind is not float:
            if kind is int:
                try:
                    value = float(value)
                except OverflowError:
                    _reject(rejections, index, RejectReason.INVALID_VALUE)
                    continue
            else:
                _reject(rejections, index, RejectReason.INVALID_VALUE)
                continue
        if value != value:
            value = None  # NaN is stored as NULL (see models.NaNFloatField)

        ts = sample.timestamp
        if ts is None:
            ms = now_ms
        else:
            kind = type(ts)
            if (kind is not float and kind is not int) or ts != ts or ts == inf or ts == -inf:
                _reject(rejections, index, RejectReason.INVALID_TIMESTAMP)
                continue
            ms = round(ts * 1000)
            if ms < oldest_ms:
                _reject(rejections, index, RejectReason.TOO_OLD)
                continue
            if ms > newest_ms:
                _reject(rejections, index, RejectReason.TOO_FAR_IN_FUTURE)
                continue

        refs.append(ref)
        timestamps.append(ms)
        values.append(value)
        metrics.add(metric)
    return _Batch(refs, timestamps, values, frozenset(metrics), rejections)


def _store(batch: _Batch) -> None:
    """Resolve the series not cached, write the samples and move each series' last value,
    all in one transaction (a savepoint when the caller already has one open)."""
    refs, timestamps, values = batch.refs, batch.timestamps, batch.values
    owns_commit = not connection.in_atomic_block
    with transaction.atomic():
        if owns_commit:
            storage.relax_commit()
        found: dict[tuple, int] = {}
        unknown = {ref: "" for ref in refs if type(ref) is tuple}
        if unknown:
            wanted = {}
            for key in unknown:
                labels = normalize_labels(dict(key[1]))
                fingerprint = series_fingerprint(key[0], labels)
                unknown[key] = fingerprint
                wanted[fingerprint] = (key[0], labels)
            ids = storage.resolve_series(wanted, created_at=timezone.now())
            found = {key: ids[fingerprint] for key, fingerprint in unknown.items()}
            refs = [found[ref] if type(ref) is tuple else ref for ref in refs]

        storage.insert_samples(refs, timestamps, values)

        series_ids, newest_ts, newest_values = _newest_per_series(refs, timestamps, values)
        missing = storage.update_last_values(series_ids, newest_ts, newest_values)
        if missing:
            # Only a cached id can be missing: the others were found in this transaction.
            raise _StaleSeriesCache(missing)
        if found:
            transaction.on_commit(partial(_remember_series, found))


def _newest_per_series(
    series_ids: list[int], timestamps: list[int], values: list[float | None]
) -> tuple[list[int], list[int], list[float | None]]:
    """Each series' newest sample in the batch, in ascending series id order; among equal
    timestamps the first one (the one stored). One NumPy sort instead of a loop per sample."""
    ids = np.array(series_ids, dtype=np.int64)
    stamps = np.array(timestamps, dtype=np.int64)
    # lexsort's last key sorts first: by id, then newest first, then by position.
    order = np.lexsort((np.arange(len(ids)), -stamps, ids))
    ordered = ids[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    chosen = order[first]
    return ids[chosen].tolist(), stamps[chosen].tolist(), [values[i] for i in chosen.tolist()]


def count_rejected(reasons: Iterable[str]) -> None:
    """Count samples that a source rejected before they reached ingest_samples (a push
    item that is not even an object)."""
    tally = Tally(reasons)
    with _stats_lock:
        _rejected_by_reason.update(tally)
    for reason, count in tally.items():
        SAMPLES_REJECTED.labels(reason=reason).inc(count)


def _count(accepted: int, rejections: list[Rejection], elapsed: float) -> None:
    reasons = Tally(rejection.reason for rejection in rejections) if rejections else {}
    with _stats_lock:
        _stats["accepted"] += accepted
        _stats["batches"] += 1
        _stats["seconds"] += elapsed
        _rejected_by_reason.update(reasons)
    SAMPLES_ACCEPTED.inc(accepted)
    for reason, count in reasons.items():
        SAMPLES_REJECTED.labels(reason=reason).inc(count)
    BATCH_SECONDS.observe(elapsed)
