import copy
import os
import subprocess
import sys
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from alerts.models import AlertRule, EscalationPolicy, EscalationStep
from healthchecks.models import HealthCheck
from monitoring.choices import AuditAction, AuditSource, Role
from monitoring.models import ApiKey, AuditLogEntry, GlobalSettings, MonitoringTarget
from notifications.models import NotificationChannel
from notifications.secrets import channel_settings, get_channel_secrets

pytestmark = pytest.mark.django_db

# A copy of shared/monitoring-config.yaml, so the suite does not need the folder beside the clone.
CONFIG = Path(__file__).resolve().parents[1] / "fixtures" / "monitoring-config.yaml"
PLAIN_SECRETS = (
    "app_password",
    "https://hooks.slack.com/services/YOUR/SLACK/WEBHOOK",
    "YOUR_TWILIO_AUTH_TOKEN",
    "Bearer YOUR_TOKEN",
    "YOUR_PAGERDUTY_INTEGRATION_KEY",
)
MODELS = (GlobalSettings, MonitoringTarget, AlertRule, HealthCheck, NotificationChannel, EscalationPolicy)


def run(command: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write_config(directory: Path, mutate: Callable[[dict], None] | None = None, name: str = "config.yaml") -> Path:
    document = yaml.safe_load(CONFIG.read_text())
    if mutate is not None:
        mutate(document)
    path = directory / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def counts() -> dict[str, int]:
    tables = (*MODELS, EscalationStep, ApiKey, User, AuditLogEntry)
    return {model.__name__: model.objects.count() for model in tables}


def row_states() -> dict[tuple[str, int], tuple]:
    """Every imported row's updated_at (and the raw secrets column of channels)."""
    states = {}
    for model in MODELS:
        for row in model.objects.all():
            states[(model.__name__, row.pk)] = (row.updated_at, getattr(row, "secrets", None))
    return states


def test_shared_config_file_is_imported_whole(tmp_path):
    out, err = run("import_config", str(CONFIG))

    assert counts() | {"User": 0, "AuditLogEntry": 0} == {
        "GlobalSettings": 1,
        "MonitoringTarget": 2,
        "AlertRule": 2,
        "HealthCheck": 4,
        "NotificationChannel": 5,
        "EscalationPolicy": 1,
        "EscalationStep": 2,
        "ApiKey": 2,
        "User": 0,
        "AuditLogEntry": 0,
    }
    assert "create alert_rules.high_cpu_usage" in out
    assert "Imported" in out and "0 updated" in out

    rule = AlertRule.objects.get(key="high_cpu_usage")
    assert (rule.name, rule.metric, rule.comparison, rule.threshold) == ("High CPU Usage", "cpu_usage_percent", ">", 80)
    assert (rule.severity, rule.duration, rule.description) == ("high", 300, "CPU usage is above 80%")
    assert set(rule.channels.values_list("key", flat=True)) == {"email"}
    assert set(AlertRule.objects.get(key="service_down").channels.values_list("key", flat=True)) == {"email", "slack"}

    target = MonitoringTarget.objects.get(slug="database")
    assert (target.name, target.kind, target.endpoint, target.check_interval, target.timeout) == (
        "PostgreSQL Database",
        "database",
        "localhost:5432",
        60,
        5,
    )

    http = HealthCheck.objects.get(key="service_health")
    assert (http.kind, http.target.slug, http.interval, http.timeout, http.enabled) == (
        "http",
        "device_service",
        30,  # the target's check_interval
        10,  # the target's timeout
        True,
    )
    assert http.config == {"method": "GET", "expected_status": 200, "expected_content": "healthy"}
    ping = HealthCheck.objects.get(key="network_health")
    assert (ping.target, ping.interval, ping.timeout) == (None, 60, 10)
    custom = HealthCheck.objects.get(key="custom_health")
    assert custom.timeout == 60  # the original puts a command's timeout in its config
    # The file's script does not exist here: the check is kept, switched off, with the reason.
    assert custom.enabled is False
    assert "check_script.sh" in custom.invalid_reason
    assert "warning: health_checks.custom_health: imported disabled:" in err

    policy = EscalationPolicy.objects.get(key="critical_default")
    assert (policy.name, policy.severity, policy.repeat) == ("Critical: page after 15 minutes", "critical", True)
    steps = [(s.order, s.after_minutes, set(s.channels.values_list("key", flat=True))) for s in policy.steps.all()]
    assert steps == [(0, 0, {"email", "slack"}), (1, 15, {"sms", "pagerduty"})]

    global_settings = GlobalSettings.load()
    assert (global_settings.organization, global_settings.environment) == ("MyHome IoT", "production")
    assert (global_settings.collection_interval, global_settings.retention_days) == (60, 30)
    assert (global_settings.prometheus_port, global_settings.evaluation_interval) == (8080, 60)
    assert (global_settings.notification_timeout, global_settings.max_retries) == (300, 3)
    assert (global_settings.cleanup_interval, global_settings.batch_size, global_settings.log_level) == (
        3600,
        1000,
        "INFO",
    )
    assert global_settings.extra["performance"]["cache_size"] == "128MB"
    assert global_settings.extra["logging"] == {"detailed_logging": False, "verbose_output": False}
    assert global_settings.extra["security"]["authorization"]["roles"]["admin"] == [
        "view_all",
        "manage_alerts",
        "configure_system",
    ]
    assert global_settings.extra["security"]["encryption"]["algorithm"] == "AES-256-GCM"
    assert "api_keys" not in global_settings.extra["security"]["authentication"]


def test_channel_secrets_are_stored_encrypted_and_decrypt(tmp_path):
    run("import_config", str(CONFIG))

    raw = "\n".join(NotificationChannel.objects.values_list("secrets", flat=True))
    configs = repr(list(NotificationChannel.objects.values_list("config", flat=True)))
    for plain in PLAIN_SECRETS:
        assert plain not in raw
        assert plain not in configs
    assert all(value.startswith("v1:") for value in NotificationChannel.objects.values_list("secrets", flat=True))

    channels = {c.key: c for c in NotificationChannel.objects.all()}
    assert get_channel_secrets(channels["email"]) == {"password": "app_password"}
    assert get_channel_secrets(channels["sms"]) == {"auth_token": "YOUR_TWILIO_AUTH_TOKEN"}
    assert channels["sms"].config["account_sid"] == "YOUR_TWILIO_ACCOUNT_SID"
    assert get_channel_secrets(channels["pagerduty"]) == {"integration_key": "YOUR_PAGERDUTY_INTEGRATION_KEY"}
    assert channels["webhook"].config["headers"] == {"Content-Type": "application/json"}
    assert channel_settings(channels["webhook"])["headers"] == {
        "Content-Type": "application/json",
        "Authorization": "Bearer YOUR_TOKEN",
    }
    email = channel_settings(channels["email"])
    assert (email["smtp_server"], email["smtp_port"], email["password"]) == ("smtp.gmail.com", 587, "app_password")
    assert email["recipients"] == ["admin@company.com", "devops@company.com"]
    assert channels["slack"].kind == "slack" and channels["slack"].enabled is True


def test_config_api_keys_authenticate_as_operator(tmp_path):
    run("import_config", str(CONFIG))

    for plain in ("monitoring-api-key-1", "monitoring-api-key-2"):
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=plain)
        response = client.get("/api/status")
        assert response.status_code == 200, response.content
        assert response.json()["status"]["monitoring_targets"] == 2
    assert not ApiKey.objects.filter(hashed_key__in=["monitoring-api-key-1", "monitoring-api-key-2"]).exists()
    owner = User.objects.get(username="config-api")
    assert list(owner.groups.values_list("name", flat=True)) == [Role.OPERATOR.value]
    assert not owner.has_usable_password()
    assert ApiKey.objects.filter(user=owner).count() == 2

    stranger = APIClient()
    stranger.credentials(HTTP_X_API_KEY="monitoring-api-key-3")
    assert stranger.get("/api/status").status_code == 401


def test_second_import_of_the_same_file_changes_nothing(tmp_path):
    run("import_config", str(CONFIG))
    before, states = counts(), row_states()

    out, _ = run("import_config", str(CONFIG))

    assert "No changes" in out
    assert "create" not in out and "update" not in out
    assert row_states() == states
    assert counts() == before | {"AuditLogEntry": before["AuditLogEntry"] + 1}


def test_each_applied_import_writes_one_audit_entry(tmp_path):
    run("import_config", str(CONFIG))
    run("import_config", str(CONFIG), "--dry-run")

    entry = AuditLogEntry.objects.get()
    assert (entry.source, entry.action, entry.object_repr) == (AuditSource.CLI, AuditAction.IMPORT, str(CONFIG))
    assert entry.actor_name.endswith("(shell)") or entry.actor_name == "shell"
    assert entry.after["file"] == str(CONFIG.resolve())
    assert (entry.after["created"], entry.after["updated"], entry.after["unchanged"]) == (18, 0, 0)
    assert "create notifications.email" in entry.after["changes"]


def test_dry_run_prints_the_changes_and_writes_nothing(tmp_path):
    before = counts()

    out, _ = run("import_config", str(CONFIG), "--dry-run")

    assert counts() == before
    assert "would create monitoring_targets.device_service" in out
    assert "would create security.authentication.api_keys[0]" in out
    assert "nothing was written" in out

    run("import_config", str(CONFIG))
    states = row_states()
    changed = write_config(tmp_path, lambda d: d["alert_rules"]["high_cpu_usage"].update(threshold=90))
    out, _ = run("import_config", str(changed), "--dry-run")

    assert "would update alert_rules.high_cpu_usage: threshold 80.0 -> 90" in out
    assert AlertRule.objects.get(key="high_cpu_usage").threshold == 80
    assert row_states() == states


def test_changed_file_updates_only_the_changed_rows(tmp_path):
    run("import_config", str(CONFIG))
    states = row_states()

    def mutate(document: dict) -> None:
        document["alert_rules"]["high_cpu_usage"]["notification_channels"] = ["email", "slack"]
        document["monitoring_targets"]["database"]["timeout"] = 7
        document["notifications"]["email"]["password"] = "new_password"

    out, _ = run("import_config", str(write_config(tmp_path, mutate)))

    assert "update alert_rules.high_cpu_usage: notification_channels" in out
    assert "update monitoring_targets.database: timeout 5 -> 7" in out
    assert "update notifications.email: password (secret)" in out
    assert "new_password" not in out
    changed = {
        ("AlertRule", AlertRule.objects.get(key="high_cpu_usage").pk),
        ("MonitoringTarget", MonitoringTarget.objects.get(slug="database").pk),
        ("NotificationChannel", NotificationChannel.objects.get(key="email").pk),
        # its timeout comes from its target's
        ("HealthCheck", HealthCheck.objects.get(key="database_health").pk),
    }
    after = row_states()
    assert {key for key in after if after[key] != states[key]} == changed
    assert set(AlertRule.objects.get(key="high_cpu_usage").channels.values_list("key", flat=True)) == {"email", "slack"}
    assert get_channel_secrets(NotificationChannel.objects.get(key="email")) == {"password": "new_password"}
    assert HealthCheck.objects.get(key="database_health").timeout == 7


def test_a_section_left_out_of_the_file_is_left_alone(tmp_path):
    run("import_config", str(CONFIG))
    GlobalSettings.objects.filter(pk=1).update(organization="Edited in the admin")
    states = row_states()
    partial = tmp_path / "partial.yaml"
    partial.write_text(yaml.safe_dump({"alert_rules": {"disk_full": _rule(channels=["pagerduty"])}}))

    out, _ = run("import_config", str(partial))

    assert "create alert_rules.disk_full" in out
    assert GlobalSettings.load().organization == "Edited in the admin"
    assert row_states().items() >= states.items()
    assert MonitoringTarget.objects.count() == 2
    assert set(AlertRule.objects.get(key="disk_full").channels.values_list("key", flat=True)) == {"pagerduty"}


def _rule(**changes) -> dict:
    rule = {
        "name": "Disk full",
        "metric_query": "disk_usage_percent",
        "threshold": 95,
        "comparison": ">=",
        "severity": "critical",
        "duration": 0,
        "notification_channels": changes.pop("channels", ["email"]),
    }
    return rule | changes


def _set(path: str, value) -> Callable[[dict], None]:
    def mutate(document: dict) -> None:
        *parents, last = path.split(".")
        node = document
        for name in parents:
            node = node[name]
        node[last] = value

    return mutate


BROKEN = {
    "bad comparison": (
        _set("alert_rules.high_cpu_usage.comparison", ">>"),
        "alert_rules.high_cpu_usage.comparison: '>>' is not one of > < >= <= == !=",
    ),
    "negative duration": (
        _set("alert_rules.service_down.duration", -60),
        "alert_rules.service_down.duration: -60 is not a non-negative integer",
    ),
    "unknown severity": (
        _set("alert_rules.high_cpu_usage.severity", "urgent"),
        "alert_rules.high_cpu_usage.severity: 'urgent' is not one of low medium high critical",
    ),
    "unknown channel": (
        _set("alert_rules.service_down.notification_channels", ["email", "teams"]),
        "alert_rules.service_down.notification_channels[1]: 'teams' is not a notification channel in the file or "
        "the database",
    ),
    "unknown target": (
        _set("health_checks.service_health.target", "nowhere"),
        "health_checks.service_health.target: 'nowhere' is not a monitoring target in the file or the database",
    ),
    "unknown step channel": (
        lambda d: d["escalation_policies"]["critical_default"]["steps"][1].update(notification_channels=["fax"]),
        "escalation_policies.critical_default.steps[1].notification_channels[0]: 'fax' is not a notification "
        "channel in the file or the database",
    ),
    "misspelt key": (
        lambda d: d["alert_rules"]["high_cpu_usage"].update(duraton=5),
        "alert_rules.high_cpu_usage.duraton: unknown key (known: name, description, metric_query, threshold,",
    ),
    "missing threshold": (
        lambda d: d["alert_rules"]["high_cpu_usage"].pop("threshold"),
        "alert_rules.high_cpu_usage.threshold: is required",
    ),
    "bad port": (
        _set("notifications.email.smtp_port", "587"),
        "notifications.email.smtp_port: '587' is not a port number (1-65535)",
    ),
    "bad recipient": (
        _set("notifications.sms.recipients", ["+1987654321", "555-1234"]),
        "notifications.sms.recipients[1]: '555-1234' is not a phone number in international form",
    ),
    "bad webhook format": (
        _set("notifications.webhook.format", "xml"),
        "notifications.webhook.format: 'xml' is not one of json alertmanager",
    ),
    "bad channel timeout": (
        _set("notifications.webhook.timeout", 0),
        "notifications.webhook.timeout: 0 is not a number of seconds above 0 and at most 300",
    ),
    "unknown key of a channel": (
        _set("notifications.pagerduty.event_url", "https://events.example.com"),
        "notifications.pagerduty.event_url: unknown key (known: enabled, kind, name, rate_limit_per_minute, "
        "template, integration_key, severity_mapping, events_url, timeout, events)",
    ),
    "unknown section": (_set("alerting_rules", {}), "alerting_rules: unknown section (known: global, metrics,"),
    "unknown role": (
        _set("security.authorization.roles.superuser", ["everything"]),
        "security.authorization.roles.superuser: 'superuser' is not one of viewer operator admin",
    ),
    "two retention periods": (
        _set("database.retention_days", 60),
        "database.retention_days: 60 differs from metrics.retention_days (30); both set the one retention period",
    ),
    "dependency loop": (
        lambda d: (
            d["monitoring_targets"]["database"].update(parent="device_service"),
            d["monitoring_targets"]["device_service"].update(parent="database"),
        ),
        "monitoring_targets.database.parent: 'device_service' makes a dependency loop "
        "(database -> device_service -> database)",
    ),
    "section not a mapping": (
        _set("monitoring_targets", ["device_service"]),
        "monitoring_targets: is a list, not a mapping",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_file_is_refused_whole_with_the_key_path(tmp_path, case):
    run("import_config", str(CONFIG))
    before, states = counts(), row_states()
    mutate, message = BROKEN[case]

    def break_and_change(document: dict) -> None:
        document["global"]["organization"] = "Half-imported?"  # a valid change that must not land
        document["monitoring_targets"]["new_target"] = {"name": "New", "type": "host", "endpoint": "10.0.0.9"}
        mutate(document)

    err = StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("import_config", str(write_config(tmp_path, break_and_change)), stdout=StringIO(), stderr=err)

    assert exc.value.returncode == 2
    assert "nothing was written" in str(exc.value)
    assert any(line.startswith(message) for line in err.getvalue().splitlines()), err.getvalue()
    assert counts() == before
    assert row_states() == states
    assert GlobalSettings.load().organization == "MyHome IoT"


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    def mutate(document: dict) -> None:
        document["alert_rules"]["high_cpu_usage"]["comparison"] = ">>"
        document["alert_rules"]["service_down"]["duration"] = -1
        document["health_checks"]["database_health"]["target"] = "nowhere"

    err = StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("import_config", str(write_config(tmp_path, mutate)), stdout=StringIO(), stderr=err)

    assert exc.value.returncode == 2
    assert "3 problems" in str(exc.value)
    assert err.getvalue().splitlines() == [
        "alert_rules.service_down.duration: -1 is not a non-negative integer",
        "alert_rules.high_cpu_usage.comparison: '>>' is not one of > < >= <= == !=",
        "health_checks.database_health.target: 'nowhere' is not a monitoring target in the file or the database",
    ]
    assert counts() == dict.fromkeys(counts(), 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("global:\n  organization: [unclosed\n", "not valid YAML: line 3, column 1"),
        (
            "global:\n organization: a\n  project: b\n",
            "not valid YAML: line 3, column 10: mapping values are not allowed",
        ),
        ("- global\n- metrics\n", "the file must be a mapping of sections (global, metrics, alerting,"),
        ("just text\n", "the file must be a mapping of sections"),
        ("", "the file is empty"),
        ("alert_rules: {}\nalert_rules: {}\n", "not valid YAML: line 2, column 1: duplicate key 'alert_rules'"),
    ],
)
def test_unreadable_yaml_is_refused_with_exit_code_2(tmp_path, text, message):
    before = counts()
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    err = StringIO()

    with pytest.raises(CommandError) as exc:
        call_command("import_config", str(path), stdout=StringIO(), stderr=err)

    assert exc.value.returncode == 2
    assert err.getvalue().startswith(message), err.getvalue()
    assert counts() == before


def test_missing_file_exits_2_with_the_reason_on_stderr(tmp_path):
    """Through manage.py itself: the exit code a shell script sees."""
    missing = tmp_path / "nope.yaml"
    completed = subprocess.run(
        [sys.executable, "manage.py", "import_config", str(missing)],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert completed.returncode == 2
    assert f"cannot read {missing}: No such file or directory" in completed.stderr
    assert "nothing was written" in completed.stderr
    assert completed.stdout == ""


def test_export_round_trip_changes_nothing(tmp_path):
    run("import_config", str(CONFIG))
    states, before = row_states(), counts()
    exported = tmp_path / "export.yaml"

    run("export_config", "--output", str(exported), "--include-secrets")
    out, _ = run("import_config", str(exported))

    assert "No changes" in out
    assert row_states() == states
    assert counts() == before | {"AuditLogEntry": before["AuditLogEntry"] + 1}
    assert oct(exported.stat().st_mode & 0o777) == "0o600"
    again, _ = run("export_config", "--include-secrets")
    assert again == exported.read_text()


def test_export_writes_the_files_format_back(tmp_path):
    run("import_config", str(CONFIG))
    out, _ = run("export_config", "--include-secrets")
    exported = yaml.safe_load(out)
    original = yaml.safe_load(CONFIG.read_text())

    assert list(exported) == list(original)
    for section in ("global", "metrics", "alerting", "database", "performance", "logging", "monitoring_targets"):
        assert exported[section] == original[section], section
    assert exported["alert_rules"] == original["alert_rules"]
    assert exported["notifications"] == original["notifications"]
    assert exported["escalation_policies"] == original["escalation_policies"]
    assert exported["health_checks"] == original["health_checks"]
    expected_security = copy.deepcopy(original["security"])
    expected_security["authentication"]["api_keys"] = ["********", "********"]  # only hashes are stored
    assert exported["security"] == expected_security


def test_masked_export_keeps_the_stored_secrets(tmp_path):
    run("import_config", str(CONFIG))
    states = row_states()
    masked = tmp_path / "masked.yaml"

    run("export_config", "--output", str(masked))
    text = masked.read_text()
    for plain in PLAIN_SECRETS:
        assert plain not in text
    assert "password: '********'" in text

    out, _ = run("import_config", str(masked))

    assert "No changes" in out
    assert row_states() == states
    assert get_channel_secrets(NotificationChannel.objects.get(key="email")) == {"password": "app_password"}
    assert channel_settings(NotificationChannel.objects.get(key="webhook"))["headers"]["Authorization"] == (
        "Bearer YOUR_TOKEN"
    )


def test_masked_value_with_nothing_stored_is_refused(tmp_path):
    run("import_config", str(CONFIG))
    masked = tmp_path / "masked.yaml"
    run("export_config", "--output", str(masked))
    AlertRule.objects.all().delete()
    EscalationPolicy.objects.all().delete()
    NotificationChannel.objects.filter(key="email").delete()
    before = counts()

    err = StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("import_config", str(masked), stdout=StringIO(), stderr=err)

    assert exc.value.returncode == 2
    assert err.getvalue().splitlines() == [
        "notifications.email.password: is masked (********) but the channel is new: give the real value"
    ]
    assert counts() == before


def test_invalid_check_is_switched_on_once_the_file_fixes_it(tmp_path):
    run("import_config", str(CONFIG))
    assert HealthCheck.objects.get(key="custom_health").enabled is False

    fixed = write_config(tmp_path, _set("health_checks.custom_health.config.command", sys.executable + " -V"))
    out, err = run("import_config", str(fixed))

    check = HealthCheck.objects.get(key="custom_health")
    assert (check.enabled, check.invalid_reason) == (True, "")
    assert "update health_checks.custom_health:" in out
    assert "custom_health" not in err


def test_target_parents_may_come_after_their_children(tmp_path):
    def mutate(document: dict) -> None:
        document["monitoring_targets"] = {
            "sensor_7": {"name": "Sensor 7", "type": "device", "parent": "gateway_1"},
            "gateway_1": {"name": "Gateway 1", "type": "device", "endpoint": "10.0.0.1"},
        }
        document["health_checks"] = {}

    run("import_config", str(write_config(tmp_path, mutate)))

    assert MonitoringTarget.objects.get(slug="sensor_7").parent == MonitoringTarget.objects.get(slug="gateway_1")
    out, _ = run("export_config")
    assert yaml.safe_load(out)["monitoring_targets"]["sensor_7"]["parent"] == "gateway_1"


def test_a_promql_rule_needs_no_metric_query_and_round_trips(tmp_path):
    expr_rule = {
        "name": "Fleet CPU",
        "expr": 'avg by (site) (cpu_usage_percent{site!=""}) > 90',
        "threshold": 0,
        "comparison": ">",
        "notification_channels": ["email"],
    }
    run("import_config", str(write_config(tmp_path, _set("alert_rules.fleet_cpu", expr_rule))))
    rule = AlertRule.objects.get(key="fleet_cpu")
    assert rule.metric == "" and rule.expr == expr_rule["expr"]
    states = row_states()

    out, _ = run("export_config", "--include-secrets")
    exported = yaml.safe_load(out)["alert_rules"]["fleet_cpu"]
    assert "metric_query" not in exported and exported["expr"] == expr_rule["expr"]
    path = tmp_path / "export.yaml"
    path.write_text(out)
    again, _ = run("import_config", str(path))

    assert "No changes" in again
    assert row_states() == states


def test_a_rule_with_neither_metric_query_nor_expr_is_refused(tmp_path):
    rule = _rule()
    del rule["metric_query"]
    path = write_config(tmp_path, _set("alert_rules.no_query", rule))

    err = StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("import_config", str(path), stdout=StringIO(), stderr=err)

    assert refused.value.returncode == 2
    assert "alert_rules.no_query.metric_query: is required (unless the rule has an expr)" in err.getvalue()
    assert not AlertRule.objects.filter(key="no_query").exists()
