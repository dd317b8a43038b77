"""Reads of health history: the health of targets and their checks over a window, with
uptime percentages computed by the database."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, F, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from monitoring.models import MonitoringTarget

from .choices import UP_STATUSES, HealthStatus
from .models import HealthCheck, HealthCheckResult

# The order of badness: a target is as unhealthy as its worst enabled check.
SEVERITY_ORDER = (HealthStatus.CRITICAL, HealthStatus.WARNING, HealthStatus.UNKNOWN, HealthStatus.HEALTHY)


def uptime_percentage(up: int, judged: int) -> float | None:
    """Share of results that found the service up, among those that judged it (unknown
    results say nothing either way); None when nothing was judged."""
    return round(100.0 * up / judged, 3) if judged else None


def worst_status(statuses: Sequence[str]) -> str:
    for status in SEVERITY_ORDER:
        if status in statuses:
            return status
    return HealthStatus.UNKNOWN


def targets_with_health() -> QuerySet[MonitoringTarget]:
    """Targets annotated with the number of their enabled checks in each state (one query)."""
    enabled = Q(health_checks__enabled=True)
    return MonitoringTarget.objects.select_related("parent").annotate(
        checks_total=Count("health_checks", filter=enabled),
        checks_healthy=Count("health_checks", filter=enabled & Q(health_checks__status=HealthStatus.HEALTHY)),
        checks_warning=Count("health_checks", filter=enabled & Q(health_checks__status=HealthStatus.WARNING)),
        checks_critical=Count("health_checks", filter=enabled & Q(health_checks__status=HealthStatus.CRITICAL)),
        checks_unknown=Count("health_checks", filter=enabled & Q(health_checks__status=HealthStatus.UNKNOWN)),
    )


def annotated_target_status(target: MonitoringTarget) -> str:
    """The health of a target from `targets_with_health()` annotations."""
    if not target.checks_total:
        return HealthStatus.UNKNOWN
    present = [status for status in SEVERITY_ORDER if getattr(target, f"checks_{status}", 0)]
    return worst_status(present)


@dataclass(frozen=True)
class CheckHistory:
    check: HealthCheck
    uptime: float | None
    results_total: int
    results: list[HealthCheckResult]


@dataclass(frozen=True)
class TargetHealth:
    target: MonitoringTarget
    status: str
    since: datetime
    until: datetime
    uptime: float | None
    checks: list[CheckHistory]


def target_health(target: MonitoringTarget, *, now: datetime, hours: float, limit: int) -> TargetHealth:
    """The target's checks with their results of the last `hours` (the newest `limit` per
    check) and the uptime of each and of all together. Three queries whatever the sizes."""
    since = now - timedelta(hours=hours)
    checks = list(HealthCheck.objects.filter(target=target).for_listing().order_by("name", "pk"))
    window = Q(checked_at__gt=since, checked_at__lte=now)
    counts = {
        row["health_check_id"]: row
        for row in HealthCheckResult.objects.filter(window, health_check__target=target)
        .values("health_check_id")
        .annotate(
            total=Count("id"),
            up=Count("id", filter=Q(status__in=UP_STATUSES)),
            judged=Count("id", filter=~Q(status=HealthStatus.UNKNOWN)),
        )
    }
    recent: dict[int, list[HealthCheckResult]] = {check.pk: [] for check in checks}
    newest_first = [F("checked_at").desc(), F("id").desc()]
    rows = (
        HealthCheckResult.objects.filter(window, health_check__target=target)
        .annotate(rank=Window(RowNumber(), partition_by=F("health_check_id"), order_by=newest_first))
        .filter(rank__lte=limit)
        .order_by(*newest_first)
        .only("id", "health_check_id", "status", "response_time", "message", "details", "checked_at")
    )
    for result in rows:
        recent.setdefault(result.health_check_id, []).append(result)
    histories = []
    up_all = judged_all = 0
    for check in checks:
        row = counts.get(check.pk, {"total": 0, "up": 0, "judged": 0})
        up_all += row["up"]
        judged_all += row["judged"]
        uptime = uptime_percentage(row["up"], row["judged"])
        histories.append(CheckHistory(check, uptime, row["total"], recent[check.pk]))
    statuses = [c.status for c in checks if c.enabled]
    status = worst_status(statuses) if statuses else HealthStatus.UNKNOWN
    return TargetHealth(target, status, since, now, uptime_percentage(up_all, judged_all), histories)


def uptime_by_target(*, now: datetime, hours: float) -> dict[int, float | None]:
    """Each target's uptime percentage over the last `hours`, from its checks' results (one query)."""
    since = now - timedelta(hours=hours)
    rows = (
        HealthCheckResult.objects.filter(checked_at__gt=since, checked_at__lte=now, health_check__target__isnull=False)
        .values("health_check__target_id")
        .annotate(
            up=Count("id", filter=Q(status__in=UP_STATUSES)),
            judged=Count("id", filter=~Q(status=HealthStatus.UNKNOWN)),
        )
    )
    return {row["health_check__target_id"]: uptime_percentage(row["up"], row["judged"]) for row in rows}
