"""A small world for the command tests: rules with firing, acknowledged, resolved and
flapping alerts and their events, notification channels with sent and failed messages, a
target whose check went down twice, and the host's CPU series."""

import io
import os
import pty
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from alerts.choices import AlertState
from alerts.models import Alert, AlertEvent, AlertRule
from healthchecks.models import HealthCheck, HealthCheckResult
from monitoring.models import MonitoringTarget
from notifications.models import Notification, NotificationChannel


@dataclass
class Outcome:
    stdout: str
    stderr: str
    code: int  # 0, or the CommandError's returncode
    error: str = ""


def run(*args: str) -> Outcome:
    """Run a command as `manage.py` would, catching its exit: stdout, stderr, exit code and
    the error's message (which Django prints on stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        return Outcome(out.getvalue(), err.getvalue(), exc.returncode, str(exc))
    return Outcome(out.getvalue(), err.getvalue(), 0)


@dataclass
class Terminal:
    """A real pseudo-terminal: `screen` and `keyboard` are its terminal side; what is drawn
    on it is collected in `drawn`; `type()` presses keys."""

    controller: int
    fd: int
    screen: io.TextIOWrapper
    keyboard: io.TextIOWrapper
    drawn: bytearray = field(default_factory=bytearray)

    def type(self, keys: bytes) -> None:
        os.write(self.controller, keys)

    @property
    def text(self) -> str:
        return self.drawn.decode(errors="replace")


@contextmanager
def pseudo_terminal() -> Iterator[Terminal]:
    controller, fd = pty.openpty()
    finished = threading.Event()
    with open(fd, "w", closefd=False) as screen, open(fd, closefd=False) as keyboard:
        terminal = Terminal(controller, fd, screen, keyboard)

        def drain() -> None:  # a terminal's buffer is small: read as it is drawn
            while True:
                ready, _, _ = select.select([controller], [], [], 0.05)
                if ready:
                    terminal.drawn.extend(os.read(controller, 65536))
                elif finished.is_set():
                    return

        reader = threading.Thread(target=drain)
        reader.start()
        try:
            yield terminal
            screen.flush()
        finally:
            finished.set()
            reader.join()
    os.close(controller)
    os.close(fd)


_notification_keys = iter(range(1_000_000))


def make_alert(rule: AlertRule, fingerprint: str, state: str, fired_at: datetime | None, **extra) -> Alert:
    return Alert.objects.create(
        rule=rule,
        fingerprint=fingerprint,
        labels=extra.pop("labels", {"host": f"gw-{fingerprint}"}),
        severity=rule.severity,
        state=state,
        value=extra.pop("value", 93.0),
        pending_since=fired_at or timezone.now(),
        fired_at=fired_at,
        created_at=fired_at or timezone.now(),
        **extra,
    )


def make_notification(alert: Alert | None, channel: NotificationChannel, status: str, at: datetime) -> Notification:
    return Notification.objects.create(
        alert=alert,
        channel=channel,
        event="firing",
        status=status,
        created_at=at,
        idempotency_key=f"test-{next(_notification_keys)}",
    )


@pytest.fixture
def now() -> datetime:
    return timezone.now()


@pytest.fixture
def world(users, now):
    """Times are relative to the real clock, as the commands read it."""
    cpu = AlertRule.objects.create(
        key="high-cpu", name="High CPU", metric="cpu_usage_percent", comparison=">", threshold=80, severity="high"
    )
    down = AlertRule.objects.create(
        key="service-down", name="Service down", metric="service_up", comparison="<", threshold=1, severity="critical"
    )
    first = now - timedelta(days=2)
    # Fired, acknowledged after 10 min, resolved after an hour; fired again 30 min later: a flap.
    early = make_alert(
        cpu,
        "a",
        AlertState.RESOLVED,
        first,
        acknowledged_at=first + timedelta(minutes=10),
        resolved_at=first + timedelta(hours=1),
    )
    again = make_alert(
        cpu,
        "a",
        AlertState.RESOLVED,
        first + timedelta(minutes=90),
        resolved_at=first + timedelta(minutes=120),
    )
    firing = make_alert(down, "d", AlertState.ACTIVE, now - timedelta(hours=1), labels={"target": "api"})
    old = make_alert(
        cpu, "b", AlertState.RESOLVED, now - timedelta(days=10), resolved_at=now - timedelta(days=10, hours=-1)
    )
    pending = make_alert(cpu, "p", AlertState.PENDING, None)
    AlertEvent.objects.create(alert=firing, from_state="pending", to_state="active", at=now - timedelta(hours=1))
    AlertEvent.objects.create(alert=early, from_state="active", to_state="resolved", at=first + timedelta(hours=1))
    email = NotificationChannel.objects.create(key="email", name="Email", kind="email")
    slack = NotificationChannel.objects.create(key="slack", name="Slack", kind="slack")
    make_notification(early, email, "sent", first)
    make_notification(again, email, "sent", first + timedelta(minutes=90))
    make_notification(firing, slack, "failed", now - timedelta(hours=1))
    make_notification(firing, email, "pending", now - timedelta(hours=1))
    make_notification(old, email, "sent", now - timedelta(days=10))

    api = MonitoringTarget.objects.create(slug="api", name="API", kind="service", endpoint="http://api.test")
    check = HealthCheck.objects.create(key="api-http", name="API HTTP", kind="http", target=api, status="critical")
    # healthy, healthy, critical, critical (one outage), healthy, unknown (judges nothing), critical (another)
    timeline = [
        ("healthy", 0.1),
        ("healthy", 0.2),
        ("critical", 1.0),
        ("critical", 1.0),
        ("healthy", 0.3),
        ("unknown", None),
        ("critical", 2.0),
    ]
    results = [
        HealthCheckResult.objects.create(
            health_check=check, status=status, response_time=seconds, checked_at=now - timedelta(hours=7 - n)
        )
        for n, (status, seconds) in enumerate(timeline)
    ]
    check.last_result = results[-1]
    check.last_checked_at = results[-1].checked_at
    check.save(update_fields=["last_result", "last_checked_at"])
    return {
        "cpu": cpu,
        "down": down,
        "early": early,
        "again": again,
        "firing": firing,
        "old": old,
        "pending": pending,
        "email": email,
        "slack": slack,
        "api": api,
        "check": check,
    }
