"""The PromQL functions of the subset, each computed for every step at once with NumPy.
They follow Prometheus 2.x (promql/functions.go and quantile.go of the 2.42 release that
Debian ships): the same extrapolation, counter-reset and bucket-interpolation arithmetic,
in the same order of floating-point operations."""

import math
from collections.abc import Callable

import numpy as np

from .values import NAME, Matrix, Scalar, Value, Vector, VSeries, unique_series, without_name


def _windows(ts: np.ndarray, t_eff: np.ndarray, range_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Per step, the index range [lo, hi) of the samples in [t - range, t] (both ends
    included, as in Prometheus 2.x)."""
    return np.searchsorted(ts, t_eff - range_ms, side="left"), np.searchsorted(ts, t_eff, side="right")


def _add_counter_resets(result: np.ndarray, values: np.ndarray, lo: np.ndarray, hi: np.ndarray, ok: np.ndarray):
    """Add, per step, the value before each drop within the window (a counter reset), in
    sample order as Prometheus adds them. Windows without a drop are left as they are."""
    drops = values[1:] < values[:-1]  # drops[j]: the counter fell between samples j and j + 1
    if not drops.any():
        return result
    before = np.concatenate(([0], np.cumsum(drops)))  # before[k]: drops between samples < k
    count = np.where(ok, before[np.maximum(hi - 1, lo)] - before[lo], 0)
    result = result.copy()
    for step in np.flatnonzero(count):
        total = result[step]
        for j in range(lo[step], hi[step] - 1):
            if values[j + 1] < values[j]:
                total += values[j]
        result[step] = total
    return result


def extrapolated_rate(matrix: Matrix, steps: np.ndarray, *, is_counter: bool, is_rate: bool) -> Vector:
    """rate (counter, per second), increase (counter) and delta (gauge): the difference
    between the first and last sample of each window, corrected for counter resets, then
    extrapolated towards the window's ends: all the way when the first or last sample is
    within 1.1 average sample intervals of its end, else half an average interval; a counter
    is never extrapolated below zero. At least two samples are needed."""
    out: list[VSeries] = []
    t_eff = steps - matrix.offset_ms
    range_start = t_eff - matrix.range_ms
    range_seconds = matrix.range_ms / 1000
    with np.errstate(all="ignore"):
        for data in matrix.series:
            ts, values = data.ts, data.values
            lo, hi = _windows(ts, t_eff, matrix.range_ms)
            count = hi - lo
            ok = count >= 2
            if not ok.any():
                continue
            first = np.where(ok, lo, 0)
            last = np.where(ok, hi - 1, 0)
            first_t, last_t, first_v = ts[first], ts[last], values[first]
            result = values[last] - first_v
            if is_counter:
                result = _add_counter_resets(result, values, lo, hi, ok)
            duration_to_start = (first_t - range_start).astype(np.float64) / 1000
            duration_to_end = (t_eff - last_t).astype(np.float64) / 1000
            sampled = (last_t - first_t).astype(np.float64) / 1000
            average = sampled / np.where(ok, count - 1, 1).astype(np.float64)
            if is_counter:
                # Counters cannot be negative: extrapolate no further back than the time at
                # which this slope would have started from zero.
                duration_to_zero = sampled * (first_v / result)
                closer = (result > 0) & (first_v >= 0) & (duration_to_zero < duration_to_start)
                duration_to_start = np.where(closer, duration_to_zero, duration_to_start)
            threshold = average * 1.1
            interval = sampled + np.where(duration_to_start < threshold, duration_to_start, average / 2)
            interval = interval + np.where(duration_to_end < threshold, duration_to_end, average / 2)
            # One factor, then one multiplication: the order of Prometheus' operations, so
            # the last bit agrees too (result * (i / s) / r can differ from result * (i / s / r)).
            factor = interval / sampled
            if is_rate:
                factor = factor / range_seconds
            result = result * factor
            out.append(VSeries(without_name(data.labels), result, ok))
    return Vector(unique_series(out))


def irate(matrix: Matrix, steps: np.ndarray) -> Vector:
    """The per-second rate between the last two samples of each window; after a counter
    reset, the last value itself counts as the increase."""
    out: list[VSeries] = []
    t_eff = steps - matrix.offset_ms
    with np.errstate(all="ignore"):
        for data in matrix.series:
            ts, values = data.ts, data.values
            lo, hi = _windows(ts, t_eff, matrix.range_ms)
            ok = (hi - lo) >= 2
            if not ok.any():
                continue
            last = np.where(ok, hi - 1, 1)
            previous, latest = values[last - 1], values[last]
            interval = ts[last] - ts[last - 1]
            ok &= interval != 0
            result = np.where(latest < previous, latest, latest - previous) / (interval.astype(np.float64) / 1000)
            out.append(VSeries(without_name(data.labels), result, ok))
    return Vector(unique_series(out))


def _window_reduce(ufunc: np.ufunc, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """ufunc reduced over values[lo:hi] per step (garbage where lo == hi: mask those).
    reduceat over interleaved (lo, hi) pairs handles overlapping windows in one call; the
    odd results (between one window's end and the next one's start) are dropped."""
    padded = np.append(values, 0.0)  # so that hi == len(values) is a valid index
    indices = np.empty(2 * len(lo), dtype=np.intp)
    indices[0::2] = lo
    indices[1::2] = hi
    return ufunc.reduceat(padded, indices)[0::2]


def over_time(kind: str, matrix: Matrix, steps: np.ndarray) -> Vector:
    """avg/min/max/sum/count/last_over_time: one value per window with at least one sample.
    min and max skip NaN samples unless all are NaN, as Prometheus does; last_over_time
    keeps the metric name, the others drop it."""
    out: list[VSeries] = []
    t_eff = steps - matrix.offset_ms
    with np.errstate(all="ignore"):
        for data in matrix.series:
            values = data.values
            lo, hi = _windows(data.ts, t_eff, matrix.range_ms)
            count = hi - lo
            ok = count >= 1
            if not ok.any():
                continue
            if kind == "count":
                result = count.astype(np.float64)
            elif kind == "last":
                result = values[np.where(ok, hi - 1, 0)]
            elif kind == "min":
                result = _window_reduce(np.fmin, values, lo, hi)
            elif kind == "max":
                result = _window_reduce(np.fmax, values, lo, hi)
            else:
                result = _window_reduce(np.add, values, lo, hi)
                if kind == "avg":
                    result = result / np.maximum(count, 1)
            labels = data.labels if kind == "last" else without_name(data.labels)
            out.append(VSeries(labels, result, ok))
    return Vector(unique_series(out))


def _elementwise(vector: Vector, operation: Callable[[np.ndarray], np.ndarray]) -> Vector:
    with np.errstate(all="ignore"):
        out = [VSeries(without_name(item.labels), operation(item.values), item.present) for item in vector.series]
    return Vector(unique_series(out))


def round_values(vector: Vector, to_nearest: np.ndarray | None) -> Vector:
    """Rounds to the nearest multiple of `to_nearest` (default 1); ties round up."""
    inverse = 1.0 if to_nearest is None else 1.0 / to_nearest
    return _elementwise(vector, lambda values: np.floor(values * inverse + 0.5) / inverse)


def scalar_of(vector: Vector, steps: np.ndarray) -> Scalar:
    """The value of the only sample at each step, NaN when there are none or several."""
    count = np.zeros(len(steps), dtype=np.int64)
    values = np.full(len(steps), np.nan)
    for item in vector.series:
        count += item.present
        values = np.where(item.present, item.values, values)
    return Scalar(np.where(count == 1, values, np.nan))


def parse_bucket_bound(text: str) -> float | None:
    """An `le` label as Go's strconv.ParseFloat reads it (None: not a number, skipped)."""
    if not text or text != text.strip() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """The q-quantile of a classic histogram given as (upper bound, cumulative count) pairs:
    Prometheus' bucketQuantile. Linear interpolation within the bucket the rank falls in;
    the lowest bucket starts at 0 unless its bound is not positive; a rank in the +Inf
    bucket answers the highest finite bound. Without a +Inf bucket, NaN."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets, key=lambda bucket: bucket[0])
    if not buckets or buckets[-1][0] != math.inf:
        return math.nan
    coalesced: list[list[float]] = []
    for bound, count in buckets:  # buckets with the same bound (e.g. "1" and "1.0") add up
        if coalesced and coalesced[-1][0] == bound:
            coalesced[-1][1] += count
        else:
            coalesced.append([bound, count])
    highest = -math.inf
    for bucket in coalesced:  # counts must not decrease (buckets scraped at slightly different times)
        if bucket[1] > highest:
            highest = bucket[1]
        elif bucket[1] < highest:
            bucket[1] = highest
    if len(coalesced) < 2:
        return math.nan
    observations = coalesced[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(coalesced) - 1) if coalesced[i][1] >= rank), len(coalesced) - 1)
    if b == len(coalesced) - 1:
        return coalesced[-2][0]
    if b == 0 and coalesced[0][0] <= 0:
        return coalesced[0][0]
    bucket_start = 0.0
    bucket_end = coalesced[b][0]
    count = coalesced[b][1]
    if b > 0:
        bucket_start = coalesced[b - 1][0]
        count -= coalesced[b - 1][1]
        rank -= coalesced[b - 1][1]
    return bucket_start + (bucket_end - bucket_start) * (rank / count)


def _quantiles_of_full_columns(q: np.ndarray, bounds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """bucket_quantile for many steps at once, for steps where every bucket has a sample
    and no count is NaN. `bounds` sorted ascending, `counts` shaped (buckets, steps)."""
    unique, starts = np.unique(bounds, return_index=True)
    if bounds[-1] != math.inf or len(unique) < 2:
        result = np.full(len(q), np.nan)
        return np.where(q < 0, -np.inf, np.where(q > 1, np.inf, result))
    if len(unique) != len(bounds):
        counts = np.add.reduceat(counts, starts, axis=0)
    counts = np.maximum.accumulate(counts, axis=0)
    observations = counts[-1]
    rank = q * observations
    reached = counts[:-1] >= rank
    b = np.where(reached.any(axis=0), reached.argmax(axis=0), len(unique) - 1)
    columns = np.arange(len(q))
    below = np.where(b > 0, counts[np.maximum(b - 1, 0), columns], 0.0)
    bucket_start = np.where(b > 0, unique[np.maximum(b - 1, 0)], 0.0)
    bucket_end = unique[np.minimum(b, len(unique) - 1)]
    count = counts[np.minimum(b, len(unique) - 1), columns] - below
    result = bucket_start + (bucket_end - bucket_start) * ((rank - below) / count)
    result = np.where((b == 0) & (unique[0] <= 0), unique[0], result)
    result = np.where(b == len(unique) - 1, unique[-2], result)
    result = np.where(observations == 0, np.nan, result)
    result = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, result))
    return np.where(np.isnan(q), np.nan, result)


def histogram_quantile(q: np.ndarray, vector: Vector) -> Vector:
    """The q-quantile of each classic histogram in `vector`: its `_bucket` series grouped by
    their labels other than `le` (series without a numeric `le` are skipped)."""
    groups: dict[tuple, tuple[dict[str, str], list[tuple[float, VSeries]]]] = {}
    for item in vector.series:
        bound = parse_bucket_bound(item.labels.get("le", ""))
        if bound is None:
            continue
        labels = {name: value for name, value in item.labels.items() if name not in ("le", NAME)}
        key = tuple(sorted(labels.items()))
        groups.setdefault(key, (labels, []))[1].append((bound, item))
    out: list[VSeries] = []
    with np.errstate(all="ignore"):
        for labels, buckets in groups.values():
            buckets.sort(key=lambda bucket: bucket[0])
            bounds = np.array([bound for bound, _ in buckets])
            counts = np.stack([item.values for _, item in buckets])
            presence = np.stack([item.present for _, item in buckets])
            present = presence.any(axis=0)
            result = np.full(len(q), np.nan)
            full = presence.all(axis=0) & ~np.isnan(counts).any(axis=0)
            if full.any():
                result[full] = _quantiles_of_full_columns(q[full], bounds, counts[:, full])
            for step in np.flatnonzero(present & ~full):
                result[step] = bucket_quantile(
                    float(q[step]),
                    [(bound, float(item.values[step])) for bound, item in buckets if item.present[step]],
                )
            out.append(VSeries(labels, result, present))
    return Vector(out)


RANGE_FUNCTIONS: dict[str, Callable[[Matrix, np.ndarray], Vector]] = {
    "rate": lambda m, s: extrapolated_rate(m, s, is_counter=True, is_rate=True),
    "increase": lambda m, s: extrapolated_rate(m, s, is_counter=True, is_rate=False),
    "delta": lambda m, s: extrapolated_rate(m, s, is_counter=False, is_rate=False),
    "irate": irate,
    "avg_over_time": lambda m, s: over_time("avg", m, s),
    "min_over_time": lambda m, s: over_time("min", m, s),
    "max_over_time": lambda m, s: over_time("max", m, s),
    "sum_over_time": lambda m, s: over_time("sum", m, s),
    "count_over_time": lambda m, s: over_time("count", m, s),
    "last_over_time": lambda m, s: over_time("last", m, s),
}


def call_function(name: str, args: list[Value], steps: np.ndarray) -> Value:
    """Evaluate function `name` (already type-checked by the parser) on evaluated arguments."""
    if name in RANGE_FUNCTIONS:
        return RANGE_FUNCTIONS[name](args[0], steps)
    if name == "abs":
        return _elementwise(args[0], np.abs)
    if name == "ceil":
        return _elementwise(args[0], np.ceil)
    if name == "floor":
        return _elementwise(args[0], np.floor)
    if name == "round":
        return round_values(args[0], args[1].values if len(args) > 1 else None)
    if name == "clamp_min":
        bound = args[1].values
        return _elementwise(args[0], lambda values: np.maximum(bound, values))
    if name == "clamp_max":
        bound = args[1].values
        return _elementwise(args[0], lambda values: np.minimum(bound, values))
    if name == "time":
        return Scalar(steps / 1000.0)
    if name == "vector":
        return Vector([VSeries({}, args[0].values.copy(), np.ones(len(steps), dtype=bool))])
    if name == "scalar":
        return scalar_of(args[0], steps)
    if name == "histogram_quantile":
        return histogram_quantile(args[0].values, args[1])
    raise AssertionError(f"function {name} passed the parser but has no implementation")
