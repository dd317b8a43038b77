"""What the metadata endpoints answer: series label sets, label names and values, metric
families with their type (from the naming conventions: no TYPE lines are stored)."""

from collections.abc import Iterable

from django.db import connection
from django.db.models.fields.json import KeyTextTransform

from monitoring.models import Sample, Series

from .ast import VectorSelector
from .selection import find_series, series_in_time


def _matching_rows(selectors: Iterable[VectorSelector], start_ms: int | None, end_ms: int | None) -> list:
    rows: dict[int, object] = {}
    for selector in selectors:
        for row in find_series(selector, since_ms=start_ms, until_ms=end_ms):
            rows[row.id] = row
    return list(rows.values())


def series_labels(selectors: list[VectorSelector], start_ms: int | None, end_ms: int | None) -> list[dict]:
    """The label sets (with __name__) of the series matching any selector, sorted."""
    labels = [row.labels for row in _matching_rows(selectors, start_ms, end_ms)]
    return sorted(labels, key=lambda item: sorted(item.items()))


def label_names(selectors: list[VectorSelector], start_ms: int | None, end_ms: int | None) -> list[str]:
    if selectors:
        return sorted({name for row in _matching_rows(selectors, start_ms, end_ms) for name in row.labels})
    if not series_in_time(start_ms, end_ms).exists():
        return []
    # Distinct JSON keys in SQL, not one decoded label set per series in Python.
    series, samples = Series._meta.db_table, Sample._meta.db_table
    if connection.vendor == "postgresql":
        sql = f"SELECT DISTINCT jsonb_object_keys(s.labels) FROM {series} s WHERE s.last_ts IS NOT NULL"  # noqa: S608
    else:
        sql = f"SELECT DISTINCT j.key FROM {series} s, json_each(s.labels) j WHERE s.last_ts IS NOT NULL"  # noqa: S608
    params: list[int] = []
    if start_ms is not None:
        sql += " AND s.last_ts >= %s"
        params.append(start_ms)
    if end_ms is not None:
        lower = "AND x.ts >= %s " if start_ms is not None else ""
        sql += f" AND EXISTS (SELECT 1 FROM {samples} x WHERE x.series_id = s.id {lower}AND x.ts <= %s)"  # noqa: S608
        params += [*([start_ms] if start_ms is not None else []), end_ms]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = {row[0] for row in cursor.fetchall()}
    return sorted(names | {"__name__"})


def label_values(name: str, selectors: list[VectorSelector], start_ms: int | None, end_ms: int | None) -> list[str]:
    if selectors:
        rows = _matching_rows(selectors, start_ms, end_ms)
        return sorted({row.labels[name] for row in rows if row.labels.get(name)})
    queryset = series_in_time(start_ms, end_ms)
    if name == "__name__":
        return sorted(set(queryset.values_list("name", flat=True).distinct()))
    values = (
        queryset.filter(labels__has_key=name)
        .annotate(promql_value=KeyTextTransform(name, "labels"))
        .values_list("promql_value", flat=True)
        .distinct()
    )
    return sorted({value for value in values if value})


def metric_type(name: str, names: set[str]) -> tuple[str, str]:
    """(family, type) of a metric name by Prometheus' naming conventions: `_bucket` (and
    the `_sum`/`_count` beside it) a histogram, `_total` a counter, anything else a gauge."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and f"{name[: -len(suffix)]}_bucket" in names:
            return name[: -len(suffix)], "histogram"
    if name.endswith("_total"):
        return name, "counter"
    return name, "gauge"


def families(metric: str | None, limit: int) -> dict[str, list[dict[str, str]]]:
    """Metadata per metric family, as /api/v1/metadata answers it (help and unit unknown)."""
    names = set(Series.objects.values_list("name", flat=True).distinct())
    found: dict[str, list[dict[str, str]]] = {}
    for name in sorted(names):
        family, kind = metric_type(name, names)
        if metric is not None and family != metric:
            continue
        if family not in found:
            if 0 <= limit <= len(found):
                break
            found[family] = [{"type": kind, "help": "", "unit": ""}]
    return found
