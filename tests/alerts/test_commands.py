import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from alerts.choices import AlertState
from alerts.models import Alert, AlertRule, Silence
from monitoring.choices import AuditAction, AuditSource
from monitoring.models import AuditLogEntry

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def refused(*args: str) -> CommandError:
    with pytest.raises(CommandError) as raised:
        run(*args)
    return raised.value


def make_rule(key: str = "high-cpu", **extra) -> AlertRule:
    fields = {"name": key.replace("-", " ").title(), "metric": "cpu_usage_percent", "comparison": ">"}
    fields.update(threshold=80.0, severity="high")
    return AlertRule.objects.create(key=key, **{**fields, **extra})


def make_alert(rule: AlertRule, fingerprint: str = "fp", state=AlertState.ACTIVE, **extra) -> Alert:
    return Alert.objects.create(
        rule=rule,
        fingerprint=fingerprint,
        labels=extra.pop("labels", {"host": "gw-1"}),
        severity=extra.pop("severity", rule.severity),
        state=state,
        value=93.0,
        fired_at=None if state == AlertState.PENDING else timezone.now(),
        **extra,
    )


@pytest.fixture
def world(users):
    rule = make_rule()
    critical = make_rule(
        "service-down", severity="critical", metric="service_up", comparison="<", threshold=1, duration=60
    )
    return {
        "rule": rule,
        "active": make_alert(rule, "a"),
        "critical": make_alert(critical, "c", labels={"target": "device_service"}),
        "resolved": make_alert(rule, "r", state=AlertState.RESOLVED),
    }


# --- alerts list ---------------------------------------------------------------------------------


def test_alerts_list_table_shows_open_alerts(world):
    output = run("alerts", "list")

    assert "Alerts (open)" in output
    assert "High Cpu" in output and "Service Down" in output
    assert "target=device_service" in output
    ids = {int(line.split()[1]) for line in output.splitlines() if line.startswith("│ ") and line.split()[1].isdigit()}
    assert ids == {world["active"].pk, world["critical"].pk}
    assert "\x1b[" not in output  # no colour codes when stdout is not a terminal


def test_alerts_list_json_with_filters(world):
    rows = json.loads(run("alerts", "list", "--status", "active", "--severity", "critical", "--format", "json"))

    assert [r["id"] for r in rows] == [world["critical"].pk]
    assert rows[0]["status"] == "active"
    assert rows[0]["rule_name"] == "Service Down"
    assert rows[0]["labels"] == {"target": "device_service"}

    everything = json.loads(run("alerts", "list", "--status", "all", "--format", "json"))
    assert {r["id"] for r in everything} == {world["active"].pk, world["critical"].pk, world["resolved"].pk}


def test_alerts_list_csv(world):
    rows = list(csv.DictReader(io.StringIO(run("alerts", "list", "--status", "resolved", "--format", "csv"))))
    assert [(int(r["id"]), r["status"], r["labels"]) for r in rows] == [
        (world["resolved"].pk, "resolved", '{"host": "gw-1"}')
    ]


def test_alerts_list_says_when_empty(db):
    assert run("alerts", "list").strip() == "No open alerts."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--status", "burning"), "--status: Unknown status"),
        (("--severity", "huge"), "--severity: Unknown severity"),
        (("--format", "xml"), "invalid choice: 'xml'"),
        (("--limit", "0"), "invalid positive integer value: '0'"),
    ],
)
def test_alerts_list_bad_usage_exits_2(world, args, message):
    error = refused("alerts", "list", *args)
    assert error.returncode == 2
    assert message in str(error)


def test_alerts_without_an_action_is_bad_usage(db):
    assert refused("alerts").returncode == 2


# --- alerts ack / resolve ------------------------------------------------------------------------------


def test_alerts_ack_as_the_default_admin_writes_event_and_cli_audit(world, users):
    output = run("alerts", "ack", "--alert-id", str(world["active"].pk), "--note", "rebooting gw-1")

    assert f"Alert {world['active'].pk} (High Cpu {{host=gw-1}}) acknowledged by admin." in output
    alert = Alert.objects.get(pk=world["active"].pk)
    assert (alert.state, alert.acknowledged_by, alert.acknowledged_note) == (
        AlertState.ACKNOWLEDGED,
        users["admin"],
        "rebooting gw-1",
    )
    assert alert.events.get().actor == users["admin"]
    entry = AuditLogEntry.objects.get(action=AuditAction.ACKNOWLEDGE)
    assert (entry.source, entry.actor) == (AuditSource.CLI, users["admin"])


def test_alerts_ack_json_with_expiry_as_a_named_operator(world, users):
    before = timezone.now()
    data = json.loads(
        run(
            "alerts",
            "ack",
            "--alert-id",
            str(world["active"].pk),
            "--expires-in",
            "30",
            "--user",
            "operator",
            "--format",
            "json",
        )
    )

    assert data["status"] == "acknowledged"
    assert data["acknowledged_by"] == "operator"
    expires = Alert.objects.get(pk=world["active"].pk).acknowledgement_expires_at
    assert before + timedelta(minutes=30) <= expires <= timezone.now() + timedelta(minutes=30)


def test_alerts_resolve(world, users):
    output = run("alerts", "resolve", "--alert-id", str(world["critical"].pk), "--user", "operator")

    assert "resolved by operator" in output
    alert = Alert.objects.get(pk=world["critical"].pk)
    assert (alert.state, alert.resolved_by) == (AlertState.RESOLVED, users["operator"])
    assert AuditLogEntry.objects.filter(action=AuditAction.RESOLVE, source=AuditSource.CLI).count() == 1


def test_unknown_alert_id_fails_with_exit_1(world):
    error = refused("alerts", "ack", "--alert-id", "987654")
    assert error.returncode == 1
    assert str(error) == "There is no alert 987654; `manage.py alerts list --status all` shows the ids."


def test_invalid_transition_fails_with_exit_1_and_the_reason(world):
    error = refused("alerts", "ack", "--alert-id", str(world["resolved"].pk))
    assert error.returncode == 1
    assert str(error).startswith(f"alert {world['resolved'].pk} is resolved; only firing alerts can be acknowledged")
    assert not AuditLogEntry.objects.exists()


@pytest.mark.parametrize("username", ["viewer", "norole"])
def test_forbidden_role_is_refused_with_exit_1(world, username):
    error = refused("alerts", "resolve", "--alert-id", str(world["active"].pk), "--user", username)

    assert error.returncode == 1
    assert f"User {username!r} has" in str(error)
    assert "needs the operator role or higher" in str(error)
    assert Alert.objects.get(pk=world["active"].pk).state == AlertState.ACTIVE


def test_unknown_user_is_bad_usage(world):
    error = refused("alerts", "ack", "--alert-id", str(world["active"].pk), "--user", "nobody")
    assert error.returncode == 2
    assert "There is no user 'nobody'" in str(error)


def test_no_admin_to_act_as_fails_with_advice(make_user):
    rule = make_rule()
    alert = make_alert(rule)
    make_user("just-a-viewer")
    error = refused("alerts", "ack", "--alert-id", str(alert.pk))
    assert error.returncode == 1
    assert "createsuperuser" in str(error)


@pytest.mark.parametrize("alert_id", ["abc", "-3", "0"])
def test_bad_alert_id_is_bad_usage(world, alert_id):
    assert refused("alerts", "ack", "--alert-id", alert_id).returncode == 2


# --- rules ---------------------------------------------------------------------------------------------


def test_rules_list_table(world):
    output = run("rules", "list")
    assert "Alert rules" in output
    assert "cpu_usage_percent > 80" in output
    assert "service_up < 1 for 60s" in output


def test_rules_list_json(world):
    rows = json.loads(run("rules", "list", "--format", "json"))
    assert [r["key"] for r in rows] == ["high-cpu", "service-down"]
    assert rows[0]["condition"] == "cpu_usage_percent > 80"
    assert rows[0]["silenced_until"] is None


def test_rules_silence_by_id_and_key(world, users):
    rule = world["rule"]
    output = run("rules", "silence", "--rule-id", str(rule.pk), "--duration", "2", "--user", "operator")

    assert f"Rule {rule.pk} (high-cpu) silenced until" in output
    silence = Silence.objects.get(rule=rule)
    assert silence.ends_at - silence.starts_at == timedelta(hours=2)
    assert silence.created_by == users["operator"]
    assert Alert.objects.get(pk=world["active"].pk).silenced is True
    entry = AuditLogEntry.objects.get(action=AuditAction.SILENCE)
    assert (entry.source, entry.actor) == (AuditSource.CLI, users["operator"])

    data = json.loads(run("rules", "silence", "--rule-id", "service-down", "--duration", "0.5", "--format", "json"))
    assert data["rule"] == AlertRule.objects.get(key="service-down").pk
    assert data["status"] == "active"
    rows = json.loads(run("rules", "list", "--format", "json"))
    assert all(r["silenced_until"] for r in rows)


@pytest.mark.parametrize("duration", ["0", "-1", "abc", "nan", "100000"])
def test_rules_silence_bad_duration_exits_2(world, duration):
    error = refused("rules", "silence", "--rule-id", str(world["rule"].pk), "--duration", duration)
    assert error.returncode == 2
    assert "--duration" in str(error)
    assert not Silence.objects.exists()


def test_rules_silence_unknown_rule_and_forbidden_role_exit_1(world):
    unknown = refused("rules", "silence", "--rule-id", "4242", "--duration", "1")
    assert unknown.returncode == 1
    assert "There is no alert rule '4242'" in str(unknown)
    forbidden = refused("rules", "silence", "--rule-id", str(world["rule"].pk), "--duration", "1", "--user", "viewer")
    assert forbidden.returncode == 1
    assert not Silence.objects.exists()
