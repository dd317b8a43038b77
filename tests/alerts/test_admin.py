"""The alerting admin: rule actions (enable, disable, silence for an hour), alert actions
(acknowledge, resolve) through the lifecycle with each role's permissions, escalation
policies with their ordered steps, and validation of silences and windows."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alerts.choices import AlertState, Severity
from alerts.models import Alert, AlertRule, EscalationPolicy, MaintenanceWindow, Silence
from monitoring.choices import AuditAction, AuditSource
from monitoring.models import AuditLogEntry
from notifications.models import NotificationChannel

pytestmark = pytest.mark.django_db


def url(model, view: str, *args) -> str:
    return reverse(f"admin:alerts_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "correct horse battery"))
    return client


def staff(user: User) -> Client:
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def rule() -> AlertRule:
    return AlertRule.objects.create(name="High CPU", key="high_cpu", metric="cpu", comparison=">", threshold=80)


def make_alert(rule: AlertRule, state: AlertState = AlertState.ACTIVE, host: str = "a") -> Alert:
    return Alert.objects.create(
        rule=rule,
        fingerprint=f"fp-{host}",
        labels={"host": host},
        severity=Severity.HIGH,
        state=state,
        fired_at=timezone.now() if state != AlertState.PENDING else None,
    )


def act(client: Client, model, action: str, objects) -> object:
    return client.post(url(model, "changelist"), {"action": action, "_selected_action": [o.pk for o in objects]})


def test_silence_action_silences_the_rule_for_one_hour(root, rule):
    before = timezone.now()
    act(root, AlertRule, "silence_selected", [rule])
    silence = Silence.objects.get(rule=rule)
    assert timedelta(minutes=59) < silence.ends_at - before <= timedelta(hours=1, seconds=5)
    assert silence.created_by.username == "root"
    entry = AuditLogEntry.objects.get(action=AuditAction.SILENCE)
    assert entry.source == AuditSource.ADMIN


def test_disable_action_closes_open_alerts_and_enable_turns_it_back_on(root, rule):
    alert = make_alert(rule)
    act(root, AlertRule, "disable_selected", [rule])
    rule.refresh_from_db()
    alert.refresh_from_db()
    assert rule.enabled is False
    assert alert.state == AlertState.RESOLVED
    assert AuditLogEntry.objects.filter(action=AuditAction.DISABLE, source=AuditSource.ADMIN).count() == 1
    act(root, AlertRule, "enable_selected", [rule])
    rule.refresh_from_db()
    assert rule.enabled is True


def rule_form(rule: AlertRule | None = None, **overrides) -> dict:
    data = {
        "name": "Disk full",
        "key": "disk_full",
        "description": "",
        "enabled": "on",
        "metric": "disk_used_percent",
        "matchers": '{"env": "prod"}',
        "comparison": ">=",
        "threshold": "90",
        "duration": "300",
        "resolve_after": "",
        "expr": "",
        "severity": "critical",
        "labels": "{}",
        "escalation_policy": "",
        "evaluation_interval": "",
    }
    return {**data, **overrides}


def test_rule_form_saves_channels_and_audits_them(root):
    channel = NotificationChannel.objects.create(name="Mail", key="email", kind="email")
    response = root.post(url(AlertRule, "add"), rule_form(channels=[channel.pk]))
    assert response.status_code == 302
    rule = AlertRule.objects.get(key="disk_full")
    assert list(rule.channels.all()) == [channel]
    created = AuditLogEntry.objects.get(action=AuditAction.CREATE)
    assert created.after["channels"] == [channel.pk]
    assert created.after["matchers"] == {"env": "prod"}


def test_rule_form_refuses_bad_matchers(root):
    response = root.post(url(AlertRule, "add"), rule_form(matchers='{"env": 1}'))
    assert response.status_code == 200
    assert not AlertRule.objects.exists()


def test_unchecking_enabled_in_the_form_closes_open_alerts_like_the_action(root, rule):
    alert = make_alert(rule)
    form = rule_form(name=rule.name, key=rule.key, metric="cpu", comparison=">", threshold="80", matchers="{}")
    form.pop("enabled")
    assert root.post(url(AlertRule, "change", rule.pk), form).status_code == 302
    rule.refresh_from_db()
    alert.refresh_from_db()
    assert rule.enabled is False
    assert alert.state == AlertState.RESOLVED


def test_operator_acknowledges_and_resolves_alerts(users, rule):
    firing, pending = make_alert(rule, host="a"), make_alert(rule, state=AlertState.PENDING, host="b")
    operator = staff(users["operator"])
    response = act(operator, Alert, "acknowledge_selected", [firing, pending])
    assert response.status_code == 302
    firing.refresh_from_db()
    pending.refresh_from_db()
    assert (firing.state, firing.acknowledged_by) == (AlertState.ACKNOWLEDGED, users["operator"])
    assert pending.state == AlertState.PENDING  # refused: only firing alerts are acknowledged
    assert firing.events.get(to_state=AlertState.ACKNOWLEDGED).actor == users["operator"]
    act(operator, Alert, "resolve_selected", [firing])
    firing.refresh_from_db()
    assert firing.state == AlertState.RESOLVED
    actions = list(
        AuditLogEntry.objects.filter(source=AuditSource.ADMIN).order_by("id").values_list("action", flat=True)
    )
    assert actions == [AuditAction.ACKNOWLEDGE, AuditAction.RESOLVE]


def test_viewer_cannot_acknowledge(users, rule):
    alert = make_alert(rule)
    viewer = staff(users["viewer"])
    page = viewer.get(url(Alert, "changelist")).content.decode()
    assert "acknowledge_selected" not in page
    act(viewer, Alert, "acknowledge_selected", [alert])
    alert.refresh_from_db()
    assert alert.state == AlertState.ACTIVE


def test_alerts_are_not_added_or_edited_by_hand(root, rule):
    alert = make_alert(rule)
    assert root.get(url(Alert, "add")).status_code == 403
    page = root.get(url(Alert, "change", alert.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()


def test_escalation_policy_saves_ordered_steps_and_audits_them(root):
    mail = NotificationChannel.objects.create(name="Mail", key="email", kind="email")
    sms = NotificationChannel.objects.create(name="SMS", key="sms", kind="sms")
    data = {
        "name": "Critical",
        "key": "critical",
        "severity": "critical",
        "enabled": "on",
        "steps-TOTAL_FORMS": "2",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        "steps-0-order": "2",
        "steps-0-after_minutes": "30",
        "steps-0-channels": [sms.pk],
        "steps-1-order": "1",
        "steps-1-after_minutes": "0",
        "steps-1-channels": [mail.pk],
    }
    response = root.post(reverse("admin:alerts_escalationpolicy_add"), data)
    assert response.status_code == 302
    policy = EscalationPolicy.objects.get(key="critical")
    assert [(s.order, s.after_minutes, [c.key for c in s.channels.all()]) for s in policy.steps.all()] == [
        (1, 0, ["email"]),
        (2, 30, ["sms"]),
    ]
    created = AuditLogEntry.objects.get(action=AuditAction.CREATE)
    assert created.after["steps"] == [
        {"order": 1, "after_minutes": 0, "channels": [mail.pk]},
        {"order": 2, "after_minutes": 30, "channels": [sms.pk]},
    ]
    # Two steps with the same order are refused.
    duplicate = {**data, "key": "other", "steps-0-order": "1"}
    assert root.post(reverse("admin:alerts_escalationpolicy_add"), duplicate).status_code == 200
    assert not EscalationPolicy.objects.filter(key="other").exists()


def test_silence_form_refuses_an_invalid_regex_and_marks_alerts_it_covers(
    root, rule, django_capture_on_commit_callbacks
):
    alert = make_alert(rule)
    now = timezone.now()
    base = {
        "rule": "",
        "starts_at_0": now.strftime("%Y-%m-%d"),
        "starts_at_1": (now - timedelta(minutes=1)).strftime("%H:%M:%S"),
        "ends_at_0": (now + timedelta(days=1)).strftime("%Y-%m-%d"),
        "ends_at_1": now.strftime("%H:%M:%S"),
        "comment": "maintenance",
    }
    bad = root.post(url(Silence, "add"), {**base, "matchers": '[{"name": "host", "op": "=~", "value": "("}]'})
    assert bad.status_code == 200
    assert "Invalid regular expression" in bad.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        good = root.post(url(Silence, "add"), {**base, "matchers": '[{"name": "host", "op": "=", "value": "a"}]'})
    assert good.status_code == 302
    assert Silence.objects.get().created_by.username == "root"
    alert.refresh_from_db()
    assert alert.silenced is True


def test_maintenance_window_form_refuses_a_schedule_that_cannot_run(root):
    data = {
        "name": "Nightly",
        "enabled": "on",
        "schedule_kind": "cron",
        "weekdays": "[]",
        "start_time": "",
        "cron": "not cron",
        "duration_minutes": "60",
        "time_zone": "UTC",
        "matchers": "[]",
    }
    response = root.post(url(MaintenanceWindow, "add"), data)
    assert response.status_code == 200
    assert "Invalid cron expression" in response.content.decode()
    assert root.post(url(MaintenanceWindow, "add"), {**data, "cron": "0 2 * * 0"}).status_code == 302
