"""Fixtures of the dashboard tests: a small fleet with something on every page (rules,
alerts in every state with events and notifications, targets with parents, checks with
results, series with samples, audit entries), sized by a parameter so that query-count
tests can show the count does not grow with the data."""

from datetime import timedelta
from uuid import uuid4

import pytest
from django.test import Client
from django.utils import timezone

from alerts.choices import AlertState, Severity
from alerts.models import Alert, AlertEvent, AlertRule
from healthchecks.choices import CheckKind, HealthStatus
from healthchecks.models import HealthCheck, HealthCheckResult
from monitoring.audit import record_audit
from monitoring.choices import AuditAction, AuditSource
from monitoring.models import MonitoringTarget
from notifications.choices import ChannelKind, NotificationEvent, NotificationStatus
from notifications.models import Notification, NotificationChannel

STATES = [AlertState.ACTIVE, AlertState.ACKNOWLEDGED, AlertState.RESOLVED, AlertState.PENDING]
SEVERITIES = list(Severity)


def build_fleet(size: int, users: dict, make_series) -> dict:
    """`size` of each kind of thing, related to each other the way the pages show them."""
    now = timezone.now()
    now_ms = int(now.timestamp() * 1000)
    channel = NotificationChannel.objects.create(name="Ops mail", key=f"mail-{uuid4().hex[:6]}", kind=ChannelKind.EMAIL)
    rule = AlertRule.objects.create(
        name="High CPU", key=f"cpu-{uuid4().hex[:6]}", metric="cpu_usage_percent", comparison=">", threshold=80
    )
    gateway = MonitoringTarget.objects.create(name="Gateway", slug=f"gw-{uuid4().hex[:6]}")
    targets = [
        MonitoringTarget.objects.create(name=f"Device {i}", slug=f"dev-{i}-{uuid4().hex[:6]}", parent=gateway)
        for i in range(size)
    ]
    alerts = []
    for i in range(size):
        state = STATES[i % len(STATES)]
        alert = Alert.objects.create(
            rule=rule,
            fingerprint=uuid4().hex,
            labels={"host": f"h{i}", "target": targets[i].slug},
            severity=SEVERITIES[i % len(SEVERITIES)],
            state=state,
            value=90.0 + i,
            target=targets[i],
            fired_at=now - timedelta(minutes=10) if state != AlertState.PENDING else None,
            acknowledged_by=users["operator"] if state == AlertState.ACKNOWLEDGED else None,
            acknowledged_at=now if state == AlertState.ACKNOWLEDGED else None,
            resolved_at=now if state == AlertState.RESOLVED else None,
            silenced=i % 5 == 0,
        )
        AlertEvent.objects.create(
            alert=alert, from_state="", to_state=AlertState.PENDING, at=now - timedelta(minutes=11)
        )
        AlertEvent.objects.create(
            alert=alert, from_state=AlertState.PENDING, to_state=state, at=now, actor=users["operator"]
        )
        Notification.objects.create(
            alert=alert,
            channel=channel,
            event=NotificationEvent.FIRING,
            status=NotificationStatus.SENT if i % 2 else NotificationStatus.FAILED,
            attempts=1,
            idempotency_key=uuid4().hex,
            last_error="" if i % 2 else "SMTP 550",
        )
        alerts.append(alert)
    checks = []
    for i, target in enumerate(targets):
        check = HealthCheck.objects.create(
            name=f"Ping {i}",
            key=f"ping-{i}-{uuid4().hex[:6]}",
            kind=CheckKind.TCP,
            target=target,
            config={"host": "127.0.0.1", "port": 1},
            status=[HealthStatus.HEALTHY, HealthStatus.CRITICAL, HealthStatus.WARNING][i % 3],
            last_checked_at=now,
        )
        results = HealthCheckResult.objects.bulk_create(
            HealthCheckResult(
                health_check=check,
                status=HealthStatus.HEALTHY,
                response_time=0.01 * (k + 1),
                message="ok",
                checked_at=now - timedelta(minutes=k),
            )
            for k in range(5)
        )
        check.last_result = results[0]
        check.save(update_fields=["last_result"])
        checks.append(check)
    series = [
        make_series(
            "cpu_usage_percent",
            {"host": f"h{i}", "target": targets[i].slug},
            [(now_ms - k * 60_000, 40.0 + (k % 40) + 4 * i) for k in range(60)],
        )
        for i in range(size)
    ]
    for i in range(size):
        record_audit(actor=users["admin"], source=AuditSource.DASHBOARD, action=AuditAction.ACKNOWLEDGE, obj=alerts[i])
    return {"rule": rule, "alerts": alerts, "targets": targets, "gateway": gateway, "checks": checks, "series": series}


@pytest.fixture
def fleet(users, make_series):
    return build_fleet(8, users, make_series)


@pytest.fixture
def login(users):
    def make(role: str) -> Client:
        client = Client()
        client.force_login(users[role])
        return client

    return make


@pytest.fixture(autouse=True)
def _role_groups_in_transactional_tests(request):
    """Transactional tests start from a flushed database, without the role groups that the
    data migration created; put them back so `users` can join them."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or "asgi_server" in request.fixturenames
    if marker is not None and marker.kwargs.get("transaction"):
        transactional = True
    if transactional:
        from django.contrib.auth.models import Group, Permission

        from monitoring.roles import sync_role_groups

        request.getfixturevalue("transactional_db")
        sync_role_groups(Group, Permission)
