"""Every list endpoint of the API with a factory that stores `n` rows of it, each row with
everything its item shows (owner, rule, target, channels, last result...), so an N+1
query shows up as a count that grows with `n`."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from uuid import uuid4

from django.contrib.auth.models import User
from django.utils import timezone

from alerts.models import Alert, AlertEvent, AlertRule, EscalationPolicy, EscalationStep, Silence
from healthchecks.models import HealthCheck, HealthCheckResult
from monitoring.apikeys import create_api_key
from monitoring.audit import record_audit
from monitoring.discovery.models import DiscoveredTarget
from monitoring.models import MonitoringTarget, Series
from notifications.models import Notification, NotificationChannel


def _unique() -> str:
    return uuid4().hex[:10]


def _channel() -> NotificationChannel:
    return NotificationChannel.objects.create(
        key=f"ch-{_unique()}", name="Ops mail", kind="email", config={"smtp_server": "127.0.0.1"}
    )


def _target(parent: MonitoringTarget | None = None) -> MonitoringTarget:
    return MonitoringTarget.objects.create(slug=f"t-{_unique()}", name="Gateway", kind="device", parent=parent)


def _rule(channel: NotificationChannel | None = None, policy: EscalationPolicy | None = None) -> AlertRule:
    rule = AlertRule.objects.create(
        key=f"r-{_unique()}",
        name="CPU high",
        metric="cpu_usage_percent",
        comparison=">",
        threshold=90,
        escalation_policy=policy,
    )
    if channel is not None:
        rule.channels.add(channel)
    return rule


def make_alerts(n: int, users: dict[str, User]) -> None:
    channel, target = _channel(), _target()
    for _ in range(n):
        rule = _rule(channel)
        now = timezone.now()
        alert = Alert.objects.create(
            rule=rule,
            fingerprint=_unique(),
            labels={"host": "a"},
            severity="high",
            state="acknowledged",
            fired_at=now,
            acknowledged_at=now,
            acknowledged_by=users["operator"],
            target=target,
        )
        AlertEvent.objects.create(alert=alert, from_state="active", to_state="acknowledged", actor=users["operator"])


def make_rules(n: int, users: dict[str, User]) -> None:
    channel = _channel()
    policy = EscalationPolicy.objects.create(key=f"p-{_unique()}", name="Default")
    for _ in range(n):
        rule = _rule(channel, policy)
        Silence.objects.create(rule=rule, ends_at=timezone.now() + timedelta(hours=1), created_by=users["operator"])


def make_silences(n: int, users: dict[str, User]) -> None:
    rule = _rule()
    for _ in range(n):
        Silence.objects.create(
            rule=rule,
            matchers=[{"name": "host", "op": "=", "value": "a"}],
            ends_at=timezone.now() + timedelta(hours=1),
            created_by=users["operator"],
        )


def make_policies(n: int, users: dict[str, User]) -> None:
    channels = [_channel(), _channel()]
    for _ in range(n):
        policy = EscalationPolicy.objects.create(key=f"p-{_unique()}", name="Night shift")
        for order in range(2):
            EscalationStep.objects.create(policy=policy, order=order, after_minutes=order * 15).channels.set(channels)


def make_checks(n: int, users: dict[str, User]) -> None:
    target = _target()
    for _ in range(n):
        check = HealthCheck.objects.create(
            key=f"c-{_unique()}", name="Web", kind="http", target=target, config={"url": "http://127.0.0.1:9/"}
        )
        result = HealthCheckResult.objects.create(health_check=check, status="healthy", response_time=0.01)
        HealthCheck.objects.filter(pk=check.pk).update(last_result=result, status="healthy")


def make_targets(n: int, users: dict[str, User]) -> None:
    parent = _target()
    for _ in range(n):
        target = _target(parent)
        HealthCheck.objects.create(key=f"c-{_unique()}", name="Ping", kind="tcp", target=target, status="critical")


def make_notifications(n: int, users: dict[str, User]) -> None:
    channel = _channel()
    for _ in range(n):
        alert = Alert.objects.create(
            rule=_rule(), fingerprint=_unique(), severity="high", state="active", fired_at=timezone.now()
        )
        Notification.objects.create(
            alert=alert, channel=channel, event="firing", status="sent", idempotency_key=_unique()
        )


def make_channels(n: int, users: dict[str, User]) -> None:
    for _ in range(n):
        _channel()


def make_api_keys(n: int, users: dict[str, User]) -> None:
    for index in range(n):
        create_api_key(user=users["viewer" if index % 2 else "operator"], name=f"device-{index}")


def make_audit_entries(n: int, users: dict[str, User]) -> None:
    for index in range(n):
        record_audit(actor=users["admin"], source="api", action="update", object_type="x.y", object_id=str(index))


def make_discovered(n: int, users: dict[str, User]) -> None:
    target = _target()
    for index in range(n):
        DiscoveredTarget.objects.create(
            source="device",
            identity=f"device:{_unique()}",
            kind="device",
            name=f"d-{index}",
            target=target if index == 0 else None,
        )


def make_series(n: int, users: dict[str, User]) -> None:
    for index in range(n):
        Series.objects.create(
            name="cpu_usage_percent", labels={"host": f"h{index}"}, fingerprint=_unique(), last_value=1.0, last_ts=1
        )


@dataclass(frozen=True)
class ListEndpoint:
    path: str
    items_key: str
    make: Callable[[int, dict[str, User]], None]
    sparse: bool = False  # accepts ?fields=


LISTS = [
    ListEndpoint("/api/alerts", "alerts", make_alerts, sparse=True),
    ListEndpoint("/api/alert-rules", "rules", make_rules),
    ListEndpoint("/api/silences", "silences", make_silences),
    ListEndpoint("/api/escalation-policies", "escalation_policies", make_policies),
    ListEndpoint("/api/health-checks", "health_checks", make_checks, sparse=True),
    ListEndpoint("/api/targets", "targets", make_targets, sparse=True),
    ListEndpoint("/api/notifications", "notifications", make_notifications, sparse=True),
    ListEndpoint("/api/notification-channels", "channels", make_channels),
    ListEndpoint("/api/api-keys", "api_keys", make_api_keys),
    ListEndpoint("/api/audit-log", "entries", make_audit_entries),
    ListEndpoint("/api/discovered-targets", "discovered_targets", make_discovered),
    ListEndpoint("/api/metrics", "metrics", make_series),
]
