"""The system's overall status, as `GET /api/status` and `manage.py status` show it."""

from dataclasses import asdict, dataclass

from django.db.models import Count, Q


@dataclass(frozen=True)
class SystemStatus:
    system_health: str  # healthy | degraded | critical
    active_alerts: int
    monitoring_targets: int
    alert_rules: int
    health_checks: int

    def as_dict(self) -> dict:
        return asdict(self)


def system_status() -> SystemStatus:
    """Decide the system's health: critical while a critical alert fires, degraded while
    any other alert fires or a health check is critical, healthy otherwise."""
    from alerts.choices import FIRING_STATES, Severity
    from alerts.models import Alert, AlertRule
    from healthchecks.choices import HealthStatus
    from healthchecks.models import HealthCheck

    from .models import MonitoringTarget

    firing = Alert.objects.filter(state__in=FIRING_STATES).aggregate(
        total=Count("id"), critical=Count("id", filter=Q(severity=Severity.CRITICAL))
    )
    checks = HealthCheck.objects.filter(enabled=True).aggregate(
        total=Count("id"), critical=Count("id", filter=Q(status=HealthStatus.CRITICAL))
    )
    if firing["critical"]:
        health = "critical"
    elif firing["total"] or checks["critical"]:
        health = "degraded"
    else:
        health = "healthy"
    return SystemStatus(
        system_health=health,
        active_alerts=firing["total"],
        monitoring_targets=MonitoringTarget.objects.filter(enabled=True).count(),
        alert_rules=AlertRule.objects.filter(enabled=True).count(),
        health_checks=checks["total"],
    )
