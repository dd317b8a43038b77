"""Chart data for the dashboard: series bucketed by the database to the chart's width,
gaps marked where samples are missing, units read from metric names, and the thresholds of
the rules that watch the series."""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from django.db import connection

from alerts.engine import labels_match
from alerts.models import AlertRule
from monitoring.models import Sample
from monitoring.queries import SeriesSelector, default_step_ms, list_series

# Named ranges of the Metrics page, in seconds.
RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600}
DEFAULT_RANGE = "1h"
# Series drawn on one chart; more are counted and the page asks to narrow the labels.
MAX_SERIES_PER_CHART = 20
# The chart never gets more buckets than it has pixels, nor absurdly few or many.
MIN_WIDTH_PX, MAX_WIDTH_PX, DEFAULT_WIDTH_PX = 200, 4000, 1000
# A silence this many times the series' usual spacing (and at least this many buckets)
# is drawn as a gap rather than a straight line across it.
GAP_FACTOR = 3
# Unit by metric-name suffix, Prometheus's naming conventions first.
UNIT_SUFFIXES = (
    ("_percent", "%"),
    ("_percentage", "%"),
    ("_seconds", "s"),
    ("_seconds_total", "s"),
    ("_milliseconds", "ms"),
    ("_bytes", "B"),
    ("_bytes_total", "B"),
    ("_celsius", "°C"),
    ("_volts", "V"),
    ("_watts", "W"),
    ("_hertz", "Hz"),
    ("_ratio", ""),
    ("_days", "d"),
)


def metric_unit(metric: str) -> str:
    """The unit a metric's name announces (`cpu_usage_percent` -> %), or "" if none."""
    for suffix, unit in sorted(UNIT_SUFFIXES, key=lambda item: -len(item[0])):
        if metric.endswith(suffix):
            return unit
    return ""


def clamp_width(raw: object) -> int:
    try:
        width = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_WIDTH_PX
    return max(MIN_WIDTH_PX, min(MAX_WIDTH_PX, width))


def with_gaps(points: Sequence[tuple[int, float | None]], step_ms: int) -> tuple[list[int], list[float | None]]:
    """Times (seconds) and values of one series' (ms, value) buckets, with a null inserted
    after any bucket that is followed by a silence longer than GAP_FACTOR times the usual
    spacing, so the chart breaks its line there. NaN values are nulls too."""
    times: list[int] = []
    values: list[float | None] = []
    if not points:
        return times, values
    deltas = sorted(b[0] - a[0] for a, b in zip(points, points[1:], strict=False))
    usual = deltas[len(deltas) // 2] if deltas else step_ms
    gap_after = GAP_FACTOR * max(usual, step_ms)
    previous_ts: int | None = None
    for ts, value in points:
        if previous_ts is not None and ts - previous_ts > gap_after:
            times.append((previous_ts + step_ms) // 1000)
            values.append(None)
        times.append(ts // 1000)
        values.append(None if value is None or math.isnan(value) else value)
        previous_ts = ts
    return times, values


def bucket_averages(series_ids: Sequence[int], start_ms: int, end_ms: int, step_ms: int):
    """Each series' average per bucket of `step_ms` between the two times, oldest first:
    one query, read without the ORM's per-value converters (a 24 h chart of 20 series is
    15,000 rows, and converting them cost more than the query). Buckets align on multiples
    of the step, as monitoring.queries aligns them; NaN samples are NULL and skipped."""
    by_series: dict[int, list[tuple[int, float | None]]] = {series_id: [] for series_id in series_ids}
    if not series_ids:
        return by_series
    table = connection.ops.quote_name(Sample._meta.db_table)
    placeholders = ", ".join(["%s"] * len(series_ids))
    # Only the table name (from the model) and placeholders are formatted in; values are parameters.
    sql = (
        f"SELECT series_id, (ts / %s) * %s AS bucket, AVG(value) FROM {table} "  # noqa: S608
        f"WHERE series_id IN ({placeholders}) AND ts >= %s AND ts <= %s "
        "GROUP BY series_id, bucket ORDER BY series_id, bucket"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [step_ms, step_ms, *series_ids, start_ms, end_ms])
        for series_id, bucket, average in cursor.fetchall():
            by_series[series_id].append((int(bucket), average))
    return by_series


@dataclass(frozen=True)
class Threshold:
    value: float
    rule: str
    comparison: str
    severity: str

    def as_dict(self) -> dict:
        return {"value": self.value, "rule": self.rule, "comparison": self.comparison, "severity": self.severity}


def thresholds_for(metric: str, label_sets: Iterable[Mapping[str, str]], rules: Iterable[AlertRule] | None = None):
    """The thresholds of the enabled rules on `metric` whose matchers select at least one of
    the label sets (one query unless `rules` is given). Rules with a PromQL expression have
    no single threshold and are left out."""
    label_sets = list(label_sets)
    if rules is None:
        rules = AlertRule.objects.enabled().filter(metric=metric, expr="").order_by("threshold", "id")
    found = []
    for rule in rules:
        if not label_sets or any(labels_match(rule.matchers or {}, labels) for labels in label_sets):
            found.append(Threshold(rule.threshold, rule.name, rule.comparison, rule.severity))
    return found


def series_label(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(no labels)"


def chart_data(
    selector: SeriesSelector,
    *,
    start_ms: int,
    end_ms: int,
    width_px: int,
    limit: int = MAX_SERIES_PER_CHART,
    rules: Iterable[AlertRule] | None = None,
) -> dict:
    """Everything a chart needs, as JSON: at most `limit` series of `selector` between the
    two times, bucketed by the database at the smallest nice step that gives no more
    buckets than the chart has pixels. A constant number of queries whatever the fleet."""
    step_ms = default_step_ms(start_ms, end_ms, max_points=width_px)
    page = list_series(selector, limit=limit)
    buckets = bucket_averages([info.id for info in page.series], start_ms, end_ms, step_ms)
    series = []
    for info in page.series:
        times, values = with_gaps(buckets[info.id], step_ms)
        series.append(
            {
                "id": info.id,
                "metric": info.metric,
                "labels": dict(info.labels),
                "label": series_label(info.labels),
                "t": times,
                "v": values,
            }
        )
    metric = selector.metric or (page.series[0].metric if page.series else "")
    thresholds = thresholds_for(metric, [s["labels"] for s in series], rules) if metric else []
    return {
        "metric": metric,
        "unit": metric_unit(metric),
        "start": start_ms // 1000,
        "end": end_ms // 1000,
        "step": step_ms // 1000,
        "count": page.count,
        "shown": len(series),
        "series": series,
        "thresholds": [t.as_dict() for t in thresholds],
    }
