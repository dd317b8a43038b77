"""`manage.py health` and `manage.py targets`."""

import datetime as dt
import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from healthchecks.choices import HealthStatus
from healthchecks.models import HealthCheck, HealthCheckResult
from monitoring.choices import AuditAction, AuditSource
from monitoring.models import AuditLogEntry, MonitoringTarget

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def world(tcp_listener, closed_port):
    host, port = tcp_listener
    database = MonitoringTarget.objects.create(name="PostgreSQL Database", slug="database", endpoint=f"{host}:{port}")
    broker = MonitoringTarget.objects.create(name="Broker", slug="broker", endpoint=f"127.0.0.1:{closed_port}")
    MonitoringTarget.objects.create(name="Idle Gateway", slug="idle")
    db_check = HealthCheck.objects.create(name="Database Health", key="database_health", kind="tcp", target=database)
    broker_check = HealthCheck.objects.create(name="Broker Port", key="broker_port", kind="tcp", target=broker)
    return {"database": database, "broker": broker, "db_check": db_check, "broker_check": broker_check}


def test_health_lists_checks_with_status_last_run_and_response_time(world):
    now = timezone.now()
    result = HealthCheckResult.objects.create(
        health_check=world["db_check"], status="healthy", response_time=0.0123, message="connected", checked_at=now
    )
    HealthCheck.objects.filter(pk=world["db_check"].pk).update(
        status=HealthStatus.HEALTHY, last_result=result, last_checked_at=now
    )
    out = run("health")
    line = next(row for row in out.splitlines() if "Database Health" in row)
    assert "healthy" in line and "12.3" in line and "connected" in line and "database" in line
    assert "Broker Port" in out and "unknown" in out


def test_health_json_and_filters(world):
    rows = json.loads(run("health", "--format", "json", "--target", "database"))
    assert [r["key"] for r in rows] == ["database_health"]
    assert rows[0]["status"] == "unknown" and rows[0]["last_result"] is None


def test_health_run_runs_the_checks_audits_and_exits_1_when_one_is_critical(world, users):
    with pytest.raises(CommandError) as raised:
        run("health", "--run", "--user", "operator")
    assert raised.value.returncode == 1
    assert "1 check(s) critical: Broker Port" in str(raised.value)
    world["db_check"].refresh_from_db()
    world["broker_check"].refresh_from_db()
    assert world["db_check"].status == "healthy" and world["broker_check"].status == "critical"
    entry = AuditLogEntry.objects.get(action=AuditAction.RUN)
    assert entry.source == AuditSource.CLI and entry.actor_name == "operator"
    # A single healthy check: exit 0.
    out = run("health", "--check", "database_health")
    assert "Database Health" in out and "Broker Port" not in out


def test_health_run_needs_the_operator_role(world, users):
    with pytest.raises(CommandError) as raised:
        run("health", "--run", "--user", "viewer")
    assert raised.value.returncode == 1 and "operator role" in str(raised.value)
    assert not HealthCheckResult.objects.exists()


def test_health_unknown_check_is_a_usage_error(world):
    with pytest.raises(CommandError) as raised:
        run("health", "--check", "nope")
    assert raised.value.returncode == 2


def test_targets_show_their_health_and_uptime(world):
    now = timezone.now()
    check = world["db_check"]
    for i, status in enumerate(["healthy", "healthy", "healthy", "critical"]):
        HealthCheckResult.objects.create(health_check=check, status=status, checked_at=now - dt.timedelta(minutes=i))
    HealthCheck.objects.filter(pk=world["broker_check"].pk).update(status=HealthStatus.CRITICAL)
    HealthCheck.objects.filter(pk=check.pk).update(status=HealthStatus.HEALTHY)
    rows = {r["slug"]: r for r in json.loads(run("targets", "--format", "json"))}
    assert rows["database"]["status"] == "healthy" and rows["database"]["uptime_percentage"] == 75.0
    assert rows["broker"]["status"] == "critical" and rows["broker"]["critical"] == 1
    assert rows["idle"]["status"] == "unknown" and rows["idle"]["checks"] == 0
    table = run("targets")
    assert "PostgreSQL Database" in table and "75" in table
    critical_only = json.loads(run("targets", "--status", "critical", "--format", "json"))
    assert [r["slug"] for r in critical_only] == ["broker"]
