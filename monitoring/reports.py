"""The reports of `manage.py report`: what alerting did over a period and how the targets
and the host performed, as plain data, and their writers (JSON, CSV, and a standalone
HTML page whose charts are inline SVG)."""

import bisect
import csv
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import Avg, Count, F, Max, Min, Q, Window
from django.db.models.functions import Lag, RowNumber, TruncDate
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe

from alerts.choices import FIRING_STATES, Severity

from .models import MonitoringTarget, Sample, Series
from .queries import SeriesSelector, query_range

REPORT_KINDS = ("alerts", "performance")
MAX_REPORT_DAYS = 366
# A series that fires again within this long after its previous alert resolved flaps.
FLAP_WINDOW = timedelta(hours=1)
NOISIEST_RULES = 10
PERCENTILES = (50, 95, 99)
# The host metrics of the system collector whose level means something (counters do not).
SYSTEM_METRICS = (
    "cpu_usage_percent",
    "memory_usage_percent",
    "disk_usage_percent",
    "load_average_1m",
    "load_average_5m",
    "load_average_15m",
)
MAX_SERIES_PER_CHART = 8
CHART_POINTS = 150
SEVERITY_ORDER = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW)


# --- Shapes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One table of a report: its rows and which of their keys to show, with headers."""

    key: str
    title: str
    columns: tuple[tuple[str, str], ...]
    rows: tuple[dict[str, Any], ...]
    empty: str = "Nothing in this period."


@dataclass(frozen=True)
class Chart:
    """A chart: x categories (days, channels, targets) and named series of values over
    them. kind: `stacked` bars, `grouped` bars, or `line`."""

    key: str
    title: str
    kind: str
    unit: str
    labels: tuple[str, ...]
    series: tuple[tuple[str, tuple[float | None, ...]], ...]


@dataclass(frozen=True)
class Report:
    kind: str
    title: str
    since: datetime
    until: datetime
    summary: tuple[tuple[str, str, Any], ...]  # (key, label, value)
    sections: tuple[Section, ...]
    charts: tuple[Chart, ...] = field(default=())

    @property
    def days(self) -> float:
        return round((self.until - self.since).total_seconds() / 86400, 3)

    def as_dict(self) -> dict[str, Any]:
        """The report's data for JSON: the period, the summary, every section's rows and
        every chart's series."""
        return {
            "report": self.kind,
            "since": self.since,
            "until": self.until,
            "days": self.days,
            "summary": {key: value for key, _, value in self.summary},
            **{section.key: list(section.rows) for section in self.sections},
            "charts": {
                chart.key: {
                    "title": chart.title,
                    "unit": chart.unit,
                    "labels": list(chart.labels),
                    "series": {name: list(values) for name, values in chart.series},
                }
                for chart in self.charts
            },
        }


def _mean_seconds(durations: Sequence[timedelta]) -> float | None:
    if not durations:
        return None
    return round(sum(d.total_seconds() for d in durations) / len(durations), 1)


def _days(since: datetime, until: datetime) -> list[date]:
    first, last = timezone.localdate(since), timezone.localdate(until)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def format_duration(seconds: float | None) -> str:
    """A duration as a person reads it: 45 s, 12 min, 3.5 h, 2.1 d."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


# --- The alerts report ------------------------------------------------------------------------


def alerts_report(*, now: datetime, days: int) -> Report:
    """What alerting did in the `days` before `now`: the alerts that fired (a pending alert
    dropped before firing is not one) per rule and severity, the mean time from firing to
    acknowledgement and to resolution, the noisiest rules with their flaps (firings of a
    series within FLAP_WINDOW of its previous alert's resolution), and the notifications
    per channel by outcome."""
    from alerts.models import Alert
    from notifications.choices import NotificationStatus
    from notifications.models import Notification

    since = now - timedelta(days=days)
    fired = list(
        Alert.objects.filter(fired_at__gt=since, fired_at__lte=now)
        .order_by("fired_at", "id")
        .values_list(
            "id", "rule_id", "rule__key", "rule__name", "severity", "fingerprint", "fired_at", "acknowledged_at",
            "resolved_at", "state",
        )
    )  # fmt: skip
    resolutions: dict[tuple[int, str], list[datetime]] = defaultdict(list)
    for rule_id, fingerprint, resolved_at in (
        Alert.objects.filter(resolved_at__gt=since - FLAP_WINDOW, resolved_at__lte=now)
        .order_by("resolved_at")
        .values_list("rule_id", "fingerprint", "resolved_at")
    ):
        resolutions[rule_id, fingerprint].append(resolved_at)

    by_rule: dict[tuple[int, str], dict[str, Any]] = {}
    per_rule: dict[int, dict[str, Any]] = {}
    per_day: dict[date, Counter] = defaultdict(Counter)
    all_acks: list[timedelta] = []
    all_resolves: list[timedelta] = []
    firing_now = 0
    for _id, rule_id, key, name, severity, fingerprint, fired_at, ack_at, resolved_at, state in fired:
        earlier = resolutions.get((rule_id, fingerprint), [])
        # A resolution in [fired_at - FLAP_WINDOW, fired_at) of the same series: a flap.
        flap = bisect.bisect_left(earlier, fired_at) > bisect.bisect_left(earlier, fired_at - FLAP_WINDOW)
        row = by_rule.setdefault(
            (rule_id, severity), {"rule": key, "name": name, "severity": severity, "acks": [], "resolves": []}
        )
        row["fired"] = row.get("fired", 0) + 1
        row["flaps"] = row.get("flaps", 0) + flap
        if ack_at and ack_at >= fired_at:
            row["acks"].append(ack_at - fired_at)
            all_acks.append(ack_at - fired_at)
        if resolved_at and resolved_at >= fired_at:
            row["resolves"].append(resolved_at - fired_at)
            all_resolves.append(resolved_at - fired_at)
        rule = per_rule.setdefault(
            rule_id, {"rule": key, "name": name, "severity": severity, "fired": 0, "flaps": 0, "series": set()}
        )
        rule["fired"] += 1
        rule["flaps"] += flap
        rule["series"].add(fingerprint)
        per_day[timezone.localdate(fired_at)][severity] += 1
        firing_now += state in FIRING_STATES

    rank = {severity: n for n, severity in enumerate(SEVERITY_ORDER)}
    rule_rows = tuple(
        {
            "rule": row["rule"],
            "name": row["name"],
            "severity": row["severity"],
            "fired": row["fired"],
            "acknowledged": len(row["acks"]),
            "resolved": len(row["resolves"]),
            "mean_time_to_acknowledge_s": _mean_seconds(row["acks"]),
            "mean_time_to_resolve_s": _mean_seconds(row["resolves"]),
            "flaps": row["flaps"],
        }
        for row in sorted(by_rule.values(), key=lambda r: (-r["fired"], rank.get(r["severity"], 9), r["rule"]))
    )
    noisiest = tuple(
        {
            "rule": rule["rule"],
            "name": rule["name"],
            "severity": rule["severity"],
            "fired": rule["fired"],
            "series": len(rule["series"]),
            "flaps": rule["flaps"],
        }
        for rule in sorted(per_rule.values(), key=lambda r: (-r["fired"], -r["flaps"], r["rule"]))[:NOISIEST_RULES]
    )

    sent, failed, pending = NotificationStatus.SENT, NotificationStatus.FAILED, NotificationStatus.PENDING
    channel_rows = tuple(
        {**row, "failure_rate_percent": round(100 * row["failed"] / (row["sent"] + row["failed"]), 1)
         if row["sent"] + row["failed"] else None}
        for row in Notification.objects.filter(created_at__gt=since, created_at__lte=now)
        .values(channel_key=F("channel__key"), channel_name=F("channel__name"), kind=F("channel__kind"))
        .annotate(
            sent=Count("id", filter=Q(status=sent)),
            failed=Count("id", filter=Q(status=failed)),
            pending=Count("id", filter=Q(status__in=(pending, NotificationStatus.SENDING))),
            suppressed=Count("id", filter=Q(status=NotificationStatus.SUPPRESSED)),
        )
        .order_by("channel__key")
    )  # fmt: skip

    days_list = _days(since, now)
    severities = [s for s in SEVERITY_ORDER if any(per_day[d][s] for d in days_list)] or [Severity.CRITICAL]
    fired_total = len(fired)
    summary = (
        ("alerts_fired", "Alerts fired", fired_total),
        ("still_firing", "Still firing", firing_now),
        (
            "acknowledged_percent",
            "Acknowledged %",
            round(100 * len(all_acks) / fired_total, 1) if fired_total else None,
        ),
        ("mean_time_to_acknowledge_s", "Mean time to acknowledge", _mean_seconds(all_acks)),
        ("mean_time_to_resolve_s", "Mean time to resolve", _mean_seconds(all_resolves)),
        ("flaps", "Flaps", sum(r["flaps"] for r in rule_rows)),
        ("notifications_sent", "Notifications sent", sum(r["sent"] for r in channel_rows)),
        ("notifications_failed", "Notifications failed", sum(r["failed"] for r in channel_rows)),
    )
    sections = (
        Section(
            "by_rule",
            "Alerts fired per rule and severity",
            (
                ("rule", "Rule"),
                ("severity", "Severity"),
                ("fired", "Fired"),
                ("acknowledged", "Acked"),
                ("resolved", "Resolved"),
                ("mean_time_to_acknowledge_s", "Mean to ack"),
                ("mean_time_to_resolve_s", "Mean to resolve"),
                ("flaps", "Flaps"),
            ),
            rule_rows,
            empty="No alert fired in this period.",
        ),
        Section(
            "noisiest_rules",
            f"Noisiest rules (flaps: fired again within {FLAP_WINDOW.total_seconds() / 60:.0f} min)",
            (("rule", "Rule"), ("name", "Name"), ("fired", "Fired"), ("series", "Series"), ("flaps", "Flaps")),
            noisiest,
            empty="No alert fired in this period.",
        ),
        Section(
            "notifications",
            "Notifications per channel",
            (
                ("channel_key", "Channel"),
                ("kind", "Kind"),
                ("sent", "Sent"),
                ("failed", "Failed"),
                ("pending", "Pending"),
                ("suppressed", "Suppressed"),
                ("failure_rate_percent", "Failed %"),
            ),
            channel_rows,
            empty="No notification in this period.",
        ),
        Section(
            "fired_per_day",
            "Alerts fired per day",
            (("day", "Day"), *((s, s.title()) for s in SEVERITY_ORDER), ("total", "Total")),
            tuple(
                {"day": d, **{s: per_day[d][s] for s in SEVERITY_ORDER}, "total": sum(per_day[d].values())}
                for d in days_list
            ),
        ),
    )
    charts = (
        Chart(
            "fired_per_day",
            "Alerts fired per day, by severity",
            "stacked",
            "alerts",
            tuple(d.isoformat() for d in days_list),
            tuple((s, tuple(float(per_day[d][s]) for d in days_list)) for s in severities),
        ),
        Chart(
            "notifications_per_channel",
            "Notifications per channel",
            "grouped",
            "notifications",
            tuple(r["channel_key"] for r in channel_rows),
            (
                ("sent", tuple(float(r["sent"]) for r in channel_rows)),
                ("failed", tuple(float(r["failed"]) for r in channel_rows)),
            ),
        ),
    )
    return Report("alerts", f"Alert report, last {days} days", since, now, summary, sections, charts)


# --- The performance report ---------------------------------------------------------------------


def _percentiles_by_target(since: datetime, now: datetime) -> dict[int, dict[int, float]]:
    """Nearest-rank percentiles of each target's response times (seconds) in (since, now],
    computed by the database with window functions (the same SQL on SQLite and PostgreSQL,
    neither of which has to send every result over)."""
    from healthchecks.models import HealthCheckResult

    ranked = (
        HealthCheckResult.objects.filter(
            checked_at__gt=since, checked_at__lte=now, response_time__isnull=False, health_check__target__isnull=False
        )
        .annotate(
            target_id=F("health_check__target_id"),
            rank=Window(RowNumber(), partition_by=F("health_check__target_id"), order_by=F("response_time").asc()),
            total=Window(Count("*"), partition_by=F("health_check__target_id")),
        )
        .values_list("target_id", "rank", "total", "response_time")
    )
    # Rank ceil(p/100 * n) in integer arithmetic, the same on both databases.
    wanted = Q()
    for p in PERCENTILES:
        wanted |= Q(rank=(F("total") * p + 99) / 100)
    found: dict[int, dict[int, float]] = defaultdict(dict)
    for target_id, rank, total, value in ranked.filter(wanted):
        for p in PERCENTILES:
            if rank == (total * p + 99) // 100:
                found[target_id][p] = value
    return found


def _incidents_by_target(since: datetime, now: datetime) -> Counter:
    """Outages seen by each target's checks in (since, now]: runs of consecutive critical
    results of a check (unknown results, which judge nothing, are skipped)."""
    from healthchecks.choices import HealthStatus
    from healthchecks.models import HealthCheckResult

    previous = Window(Lag("status"), partition_by=F("health_check_id"), order_by=[F("checked_at").asc(), F("id").asc()])
    judged = (
        HealthCheckResult.objects.filter(checked_at__gt=since, checked_at__lte=now, health_check__target__isnull=False)
        .exclude(status=HealthStatus.UNKNOWN)
        .annotate(target_id=F("health_check__target_id"), previous=previous)
        .values("target_id", "status", "previous")
    )
    # The run's start is decided over the window's output: a filter on `status` in the same
    # query would run before LAG and hide the results that end a run.
    inner, params = judged.query.sql_with_params()
    sql = (
        f"SELECT target_id, COUNT(*) FROM ({inner}) judged "  # noqa: S608 (the ORM's own SQL)
        "WHERE status = %s AND (previous IS NULL OR previous <> %s) GROUP BY target_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, HealthStatus.CRITICAL.value, HealthStatus.CRITICAL.value])
        return Counter(dict(cursor.fetchall()))


def _system_metrics(since: datetime, now: datetime) -> tuple[tuple[dict[str, Any], ...], tuple[Chart, ...]]:
    start_ms, end_ms = int(since.timestamp() * 1000), int(now.timestamp() * 1000)
    series = list(
        Series.objects.filter(name__in=SYSTEM_METRICS).order_by("name", "id").values_list("id", "name", "labels")
    )
    stats = {
        row["series_id"]: row
        for row in Sample.objects.filter(series_id__in=[s[0] for s in series], ts__gt=start_ms, ts__lte=end_ms)
        .values("series_id")
        .annotate(samples=Count("*"), low=Min("value"), mean=Avg("value"), high=Max("value"))
        .order_by()
    }
    rows = []
    for series_id, name, labels in series:
        row = stats.get(series_id)
        if row is None:
            continue
        rows.append(
            {
                "metric": name,
                "labels": labels,
                "samples": row["samples"],
                "min": _rounded(row["low"]),
                "avg": _rounded(row["mean"]),
                "max": _rounded(row["high"]),
            }
        )
    step_ms = _chart_step_ms(start_ms, end_ms)
    charts = []
    for metric in SYSTEM_METRICS:
        if not any(r["metric"] == metric for r in rows):
            continue
        result = query_range(
            SeriesSelector(metric=metric),
            start_ms=start_ms,
            end_ms=end_ms,
            step_ms=step_ms,
            limit=MAX_SERIES_PER_CHART,
        )
        buckets = sorted({point.ts for s in result.series for point in s.points})
        if not buckets:
            continue
        lines = []
        for s in result.series:
            by_ts = {point.ts: point.value for point in s.points}
            lines.append((_series_name(s.series.labels), tuple(_finite(by_ts.get(ts)) for ts in buckets)))
        charts.append(
            Chart(
                metric,
                f"{metric} (average per {format_duration(step_ms / 1000)})",
                "line",
                "%" if metric.endswith("_percent") else "",
                tuple(_from_ms(ts).strftime("%m-%d %H:%M") for ts in buckets),
                tuple(lines),
            )
        )
    return tuple(rows), tuple(charts)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.get_current_timezone())


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 3)


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _series_name(labels: dict[str, str]) -> str:
    shown = {k: v for k, v in labels.items() if k != "host"} or labels
    return ",".join(f"{k}={v}" for k, v in sorted(shown.items())) or "-"


def _chart_step_ms(start_ms: int, end_ms: int) -> int:
    """A step that gives at most CHART_POINTS buckets, on whole minutes, hours or days."""
    needed = (end_ms - start_ms) / 1000 / CHART_POINTS
    for step in (60, 300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if step >= needed:
            return step * 1000
    return math.ceil(needed / 86400) * 86400 * 1000


def performance_report(*, now: datetime, days: int) -> Report:
    """How the targets and the host performed in the `days` before `now`: per target the
    uptime (the share of judged check results that found it up), the response time
    percentiles p50/p95/p99 and the incidents (outages seen by its checks); and the min,
    average and max of each system metric series."""
    from healthchecks.history import uptime_by_target
    from healthchecks.models import HealthCheckResult

    since = now - timedelta(days=days)
    uptime = uptime_by_target(now=now, hours=days * 24)
    percentiles = _percentiles_by_target(since, now)
    incidents = _incidents_by_target(since, now)
    results = dict(
        HealthCheckResult.objects.filter(checked_at__gt=since, checked_at__lte=now, health_check__target__isnull=False)
        .values("health_check__target_id")
        .annotate(n=Count("id"))
        .values_list("health_check__target_id", "n")
    )
    target_rows = []
    for target in MonitoringTarget.objects.filter(enabled=True).order_by("name", "pk"):
        found = percentiles.get(target.pk, {})
        target_rows.append(
            {
                "target": target.slug,
                "name": target.name,
                "kind": target.kind,
                "results": results.get(target.pk, 0),
                "uptime_percent": uptime.get(target.pk),
                **{f"p{p}_ms": _rounded(found[p] * 1000, 1) if p in found else None for p in PERCENTILES},
                "incidents": incidents.get(target.pk, 0),
            }
        )
    daily: dict[int, dict[date, float]] = defaultdict(dict)
    for target_id, day, mean in (
        HealthCheckResult.objects.filter(
            checked_at__gt=since, checked_at__lte=now, response_time__isnull=False, health_check__target__isnull=False
        )
        .annotate(day=TruncDate("checked_at", tzinfo=timezone.get_current_timezone()))
        .values("health_check__target_id", "day")
        .annotate(mean=Avg("response_time"))
        .order_by()
        .values_list("health_check__target_id", "day", "mean")
    ):
        daily[target_id][day] = mean
    slugs = {row["target"]: row for row in target_rows}
    ids = {t.pk: t.slug for t in MonitoringTarget.objects.filter(pk__in=daily)}
    slowest = sorted(
        (ids[t] for t in daily if t in ids and ids[t] in slugs),
        key=lambda slug: -(slugs[slug]["p95_ms"] or 0),
    )[:MAX_SERIES_PER_CHART]
    by_slug = {slug: target_id for target_id, slug in ids.items()}
    days_list = _days(since, now)
    system_rows, system_charts = _system_metrics(since, now)
    judged = [r for r in target_rows if r["uptime_percent"] is not None]
    summary = (
        ("targets", "Targets", len(target_rows)),
        (
            "mean_uptime_percent",
            "Mean uptime %",
            round(sum(r["uptime_percent"] for r in judged) / len(judged), 3) if judged else None,
        ),
        ("incidents", "Incidents", sum(r["incidents"] for r in target_rows)),
        ("check_results", "Check results", sum(r["results"] for r in target_rows)),
    )
    sections = (
        Section(
            "targets",
            "Targets",
            (
                ("target", "Target"),
                ("kind", "Kind"),
                ("uptime_percent", "Uptime %"),
                *((f"p{p}_ms", f"p{p} ms") for p in PERCENTILES),
                ("incidents", "Incidents"),
                ("results", "Results"),
            ),
            tuple(target_rows),
            empty="No monitoring targets.",
        ),
        Section(
            "system_metrics",
            "System metrics",
            (("metric", "Metric"), ("labels", "Labels"), ("min", "Min"), ("avg", "Avg"), ("max", "Max")),
            system_rows,
            empty="No system metrics in this period.",
        ),
    )
    charts = (
        Chart(
            "uptime",
            "Uptime per target",
            "grouped",
            "%",
            tuple(r["target"] for r in judged),
            (("uptime %", tuple(r["uptime_percent"] for r in judged)),),
        ),
        Chart(
            "response_time",
            "Mean response time per day",
            "line",
            "ms",
            tuple(d.isoformat() for d in days_list),
            tuple(
                (
                    slug,
                    tuple(
                        _rounded(daily[by_slug[slug]][d] * 1000, 1) if d in daily[by_slug[slug]] else None
                        for d in days_list
                    ),
                )
                for slug in slowest
            ),
        ),
        *system_charts,
    )
    return Report("performance", f"Performance report, last {days} days", since, now, summary, sections, charts)


def build_report(kind: str, *, now: datetime, days: int) -> Report:
    if kind == "alerts":
        return alerts_report(now=now, days=days)
    return performance_report(now=now, days=days)


# --- Writers --------------------------------------------------------------------------------------


def report_json(report: Report) -> str:
    return json.dumps(report.as_dict(), cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def report_csv(report: Report) -> str:
    """Every section's rows in one CSV: a `section` column, then the union of the sections'
    columns (a spreadsheet filters on the first)."""
    keys: list[str] = []
    for section in report.sections:  # the shown columns first, so the header never depends on the data
        for key in [k for k, _ in section.columns] + [k for row in section.rows for k in row]:
            if key not in keys:
                keys.append(key)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["section", *keys])
    for section in report.sections:
        for row in section.rows:
            writer.writerow([section.key, *(_csv_value(row.get(k)) for k in keys)])
    return buffer.getvalue()


def display_value(key: str, value: Any) -> str:
    """A cell as a person reads it in the terminal and HTML tables."""
    if value is None or value == "":
        return "-"
    if key.endswith("_s") and isinstance(value, int | float):
        return format_duration(value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    if isinstance(value, datetime):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def report_html(report: Report) -> str:
    """A standalone page (no external file: CSS inline, charts inline SVG)."""
    return render_to_string(
        "monitoring/report.html",
        {
            "report": report,
            "generated_at": timezone.localtime(report.until),
            "since": timezone.localtime(report.since),
            "summary": [(label, display_value(key, value)) for key, label, value in report.summary],
            "charts": [(chart, mark_safe(render_svg(chart))) for chart in report.charts if _has_data(chart)],  # noqa: S308 (escaped in render_svg)
            "sections": [
                (
                    section,
                    [header for _, header in section.columns],
                    [[display_value(key, row.get(key)) for key, _ in section.columns] for row in section.rows],
                )
                for section in report.sections
                if section.key != "fired_per_day"
            ],
        },
    )


def _has_data(chart: Chart) -> bool:
    return bool(chart.labels) and any(v is not None for _, values in chart.series for v in values)


# --- SVG charts -----------------------------------------------------------------------------------

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d")
NAMED_COLOURS = {
    "critical": "#b91c1c",
    "high": "#ea580c",
    "medium": "#ca8a04",
    "low": "#0284c7",
    "sent": "#16a34a",
    "failed": "#dc2626",
}


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= value:
            return factor * power
    return 10 * power


def _tick(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"


def _colours(names: Iterable[str]) -> list[str]:
    return [NAMED_COLOURS.get(name, PALETTE[n % len(PALETTE)]) for n, name in enumerate(names)]


def render_svg(chart: Chart, *, width: int = 760, height: int = 260) -> str:
    """The chart as an SVG element. Each bar and point carries a <title> with its series,
    category and value (a tooltip in browsers); every text is escaped."""
    left, right, top, bottom = 60, 16, 34, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(chart.labels)
    names = [name for name, _ in chart.series]
    colours = _colours(names)
    if chart.kind == "stacked":
        peak = max((sum(v or 0 for _, values in chart.series for v in [values[i]]) for i in range(n)), default=0)
    else:
        peak = max((v for _, values in chart.series for v in values if v is not None), default=0)
    ymax = _nice_ceiling(peak)
    unit = f" {chart.unit}" if chart.unit and chart.unit != "%" else chart.unit

    def y(value: float) -> float:
        return top + plot_h - value / ymax * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{escape(chart.kind)}" '
        f'data-chart="{escape(chart.key)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(chart.title)}">',
        f"<title>{escape(chart.title)}</title>",
    ]
    for step in range(5):
        value = ymax * step / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(_tick(value))}{escape(chart.unit if chart.unit == '%' else '')}</text>"
        )
    if chart.unit and chart.unit != "%":
        parts.append(f'<text x="{left - 6}" y="{top - 12}" text-anchor="end" class="tick">{escape(chart.unit)}</text>')
    slot = plot_w / max(n, 1)
    every = max(1, math.ceil(n / 10))
    for i, label in enumerate(chart.labels):
        if i % every == 0:
            parts.append(
                f'<text x="{left + slot * (i + 0.5):.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'class="tick">{escape(label)}</text>'
            )
    if chart.kind in ("stacked", "grouped"):
        base = [0.0] * n
        group_w = slot * 0.8
        bar_w = group_w if chart.kind == "stacked" else group_w / max(len(names), 1)
        for s, (name, values) in enumerate(chart.series):
            for i, value in enumerate(values):
                if not value:
                    continue
                x = left + slot * i + slot * 0.1 + (0 if chart.kind == "stacked" else s * bar_w)
                bottom_value = base[i] if chart.kind == "stacked" else 0.0
                y_top, y_bottom = y(bottom_value + value), y(bottom_value)
                parts.append(
                    f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                    f'height="{max(y_bottom - y_top, 0.5):.1f}" fill="{colours[s]}">'
                    f"<title>{escape(name)} {escape(chart.labels[i])}: {escape(_tick(value))}{escape(unit)}</title>"
                    "</rect>"
                )
                if chart.kind == "stacked":
                    base[i] += value
    else:
        for s, (name, values) in enumerate(chart.series):
            path: list[str] = []
            pen_down = False
            for i, value in enumerate(values):
                if value is None:
                    pen_down = False  # a gap: no data, not a zero
                    continue
                x = left + slot * (i + 0.5)
                path.append(f"{'L' if pen_down else 'M'}{x:.1f},{y(value):.1f}")
                pen_down = True
                parts.append(
                    f'<circle cx="{x:.1f}" cy="{y(value):.1f}" r="{2 if n > 40 else 3}" fill="{colours[s]}">'
                    f"<title>{escape(name)} {escape(chart.labels[i])}: {escape(_tick(value))}{escape(unit)}</title>"
                    "</circle>"
                )
            if path:
                parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colours[s]}" stroke-width="1.5"/>')
    x = left
    for s, name in enumerate(names):
        parts.append(
            f'<rect x="{x}" y="8" width="10" height="10" fill="{colours[s]}"/>'
            f'<text x="{x + 14}" y="17" class="legend">{escape(name)}</text>'
        )
        x += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)
