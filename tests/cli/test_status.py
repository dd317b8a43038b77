"""`manage.py status`: the system's health, exit 0 only when healthy (a pipeline gate)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.choices import AlertState
from alerts.models import AlertRule

from .conftest import make_alert, run

pytestmark = pytest.mark.django_db


def test_healthy_system_exits_0_with_a_table(db):
    outcome = run("status")

    assert outcome.code == 0
    assert "System health:  HEALTHY" in outcome.stdout
    assert "Active alerts" in outcome.stdout and "0 (0 unacknowledged)" in outcome.stdout
    assert "\x1b[" not in outcome.stdout  # no colour when stdout is not a terminal


def test_a_critical_alert_firing_exits_1_naming_it_on_stderr(world):
    outcome = run("status")

    assert outcome.code == 1
    assert "CRITICAL" in outcome.stdout
    assert "The system is critical: 1 alert(s) firing (1 critical), 1 health check(s) critical" in outcome.error
    assert "manage.py alerts list --status firing" in outcome.error


def test_a_non_critical_alert_makes_it_degraded_and_exit_1(users):
    rule = AlertRule.objects.create(
        key="hot", name="Hot", metric="temp", comparison=">", threshold=70, severity="medium"
    )
    make_alert(rule, "x", AlertState.ACKNOWLEDGED, timezone.now() - timedelta(minutes=5))

    outcome = run("status", "--format", "json")

    assert outcome.code == 1
    data = json.loads(outcome.stdout)
    assert data["system_health"] == "degraded"
    assert data["active_alerts"] == 1
    assert data["alerts_by_severity"] == {"critical": 0, "high": 0, "medium": 1, "low": 0}
    assert "The system is degraded: 1 alert(s) firing (0 critical)" in outcome.error


def test_json_has_the_api_fields_and_the_breakdowns(world):
    data = json.loads(run("status", "--format", "json").stdout)

    assert data["system_health"] == "critical"
    assert data["active_alerts"] == 1 and data["critical_alerts"] == 1
    assert data["monitoring_targets"] == 1 and data["alert_rules"] == 2 and data["health_checks"] == 1
    assert data["checks_by_status"]["critical"] == 1


def test_bad_format_is_bad_usage(db):
    outcome = run("status", "--format", "yaml")

    assert outcome.code == 2
    assert "invalid choice: 'yaml'" in outcome.error
