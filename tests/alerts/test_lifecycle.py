from datetime import UTC, datetime, timedelta

import pytest

from alerts.choices import AlertState
from alerts.lifecycle import (
    AlertStateError,
    acknowledge_alert,
    expire_acknowledgements,
    filter_by_status,
    resolve_alert,
    set_rule_enabled,
)
from alerts.models import Alert, AlertEvent, AlertRule
from monitoring.choices import AuditAction, AuditSource
from monitoring.models import AuditLogEntry

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def make_rule(key: str = "cpu", **extra) -> AlertRule:
    fields = {"name": key.title(), "metric": "cpu_usage_percent", "comparison": ">", "threshold": 80.0}
    return AlertRule.objects.create(key=key, **{**fields, **extra})


def make_alert(rule: AlertRule, state: str = AlertState.ACTIVE, fingerprint: str = "fp1", **extra) -> Alert:
    return Alert.objects.create(
        rule=rule,
        fingerprint=fingerprint,
        labels={"host": "gw-1"},
        severity=rule.severity,
        state=state,
        value=91.5,
        pending_since=NOW - timedelta(minutes=10),
        fired_at=NOW - timedelta(minutes=5) if state != AlertState.PENDING else None,
        **extra,
    )


def test_acknowledge_moves_active_to_acknowledged_with_event_and_audit(users):
    alert = make_alert(make_rule())
    operator = users["operator"]

    acknowledge_alert(alert_id=alert.pk, user=operator, note="on it", source=AuditSource.CLI, now=NOW)

    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED
    assert alert.acknowledged_by == operator
    assert alert.acknowledged_at == NOW
    assert alert.acknowledged_note == "on it"
    event = AlertEvent.objects.get(alert=alert)
    assert (event.from_state, event.to_state, event.actor, event.actor_name, event.note) == (
        AlertState.ACTIVE,
        AlertState.ACKNOWLEDGED,
        operator,
        "operator",
        "on it",
    )
    entry = AuditLogEntry.objects.get(object_type="alerts.alert", object_id=str(alert.pk))
    assert entry.action == AuditAction.ACKNOWLEDGE
    assert entry.source == AuditSource.CLI
    assert entry.actor == operator
    assert entry.before["state"] == "active"
    assert entry.after["state"] == "acknowledged"


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (AlertState.RESOLVED, "alert {id} is resolved; only firing alerts can be acknowledged"),
        (AlertState.PENDING, "alert {id} is pending; only firing alerts can be acknowledged"),
        (AlertState.INACTIVE, "alert {id} is inactive (it cleared before it fired); only firing alerts"),
        (AlertState.ACKNOWLEDGED, "alert {id} is already acknowledged by someone"),
    ],
)
def test_acknowledge_refuses_alerts_that_are_not_active(users, state, message):
    alert = make_alert(make_rule(), state=state)

    with pytest.raises(AlertStateError) as refused:
        acknowledge_alert(alert_id=alert.pk, user=users["operator"], source=AuditSource.API, now=NOW)

    assert str(refused.value).startswith(message.format(id=alert.pk))
    alert.refresh_from_db()
    assert alert.state == state
    assert not AlertEvent.objects.filter(alert=alert).exists()
    assert not AuditLogEntry.objects.filter(object_type="alerts.alert").exists()


def test_acknowledge_of_unknown_alert_raises_does_not_exist(users):
    with pytest.raises(Alert.DoesNotExist):
        acknowledge_alert(alert_id=4242, user=users["operator"], source=AuditSource.API, now=NOW)


def test_acknowledge_refuses_an_expiry_in_the_past(users):
    alert = make_alert(make_rule())
    with pytest.raises(ValueError, match="expire in the future"):
        acknowledge_alert(alert_id=alert.pk, user=users["operator"], expires_at=NOW, source=AuditSource.API, now=NOW)
    alert.refresh_from_db()
    assert alert.state == AlertState.ACTIVE


@pytest.mark.parametrize("state", [AlertState.ACTIVE, AlertState.ACKNOWLEDGED])
def test_resolve_closes_a_firing_alert(users, state):
    alert = make_alert(make_rule(), state=state, acknowledgement_expires_at=NOW + timedelta(hours=1))
    admin = users["admin"]

    resolve_alert(alert_id=alert.pk, user=admin, note="fixed the fan", source=AuditSource.API, now=NOW)

    alert.refresh_from_db()
    assert (alert.state, alert.resolved_by, alert.resolved_at) == (AlertState.RESOLVED, admin, NOW)
    assert alert.acknowledgement_expires_at is None
    event = AlertEvent.objects.get(alert=alert)
    assert (event.from_state, event.to_state, event.note) == (state, AlertState.RESOLVED, "fixed the fan")
    entry = AuditLogEntry.objects.get(object_type="alerts.alert")
    assert (entry.action, entry.source, entry.actor) == (AuditAction.RESOLVE, AuditSource.API, admin)


def test_resolved_alert_frees_the_series_for_a_new_pending_alert(users):
    rule = make_rule()
    alert = make_alert(rule)
    resolve_alert(alert_id=alert.pk, user=users["admin"], source=AuditSource.API, now=NOW)

    # The one-open-alert constraint no longer holds the (rule, series): the engine can
    # start a new pending alert while the condition still holds.
    again = make_alert(rule, state=AlertState.PENDING)

    assert again.pk != alert.pk
    assert list(Alert.objects.open()) == [again]


@pytest.mark.parametrize("state", [AlertState.PENDING, AlertState.RESOLVED, AlertState.INACTIVE])
def test_resolve_refuses_alerts_that_are_not_firing(users, state):
    alert = make_alert(make_rule(), state=state)

    with pytest.raises(AlertStateError, match=f"alert {alert.pk} is {state}"):
        resolve_alert(alert_id=alert.pk, user=users["admin"], source=AuditSource.API, now=NOW)

    assert not AlertEvent.objects.filter(alert=alert).exists()


def test_api_caller_name_is_the_event_actor_name_and_the_user_is_audited(users):
    alert = make_alert(make_rule())

    acknowledge_alert(
        alert_id=alert.pk,
        user=users["operator"],
        actor_name="john.doe",
        source=AuditSource.API,
        now=NOW,
        api_key_name="ci-key",
        ip="10.0.0.7",
    )

    event = AlertEvent.objects.get(alert=alert)
    assert (event.actor, event.actor_name) == (users["operator"], "john.doe")
    entry = AuditLogEntry.objects.get(object_type="alerts.alert")
    assert (entry.api_key_name, entry.ip, entry.after["acknowledged_as"]) == ("ci-key", "10.0.0.7", "john.doe")


def test_expired_acknowledgement_returns_to_active(users):
    rule = make_rule()
    expiring = make_alert(rule, fingerprint="a")
    lasting = make_alert(rule, fingerprint="b")
    acknowledge_alert(
        alert_id=expiring.pk,
        user=users["operator"],
        expires_at=NOW + timedelta(minutes=30),
        source=AuditSource.API,
        now=NOW,
    )
    acknowledge_alert(alert_id=lasting.pk, user=users["operator"], source=AuditSource.API, now=NOW)

    assert expire_acknowledgements(NOW + timedelta(minutes=29)) == []
    assert expire_acknowledgements(NOW + timedelta(minutes=30)) == [expiring.pk]

    expiring.refresh_from_db()
    lasting.refresh_from_db()
    assert expiring.state == AlertState.ACTIVE
    assert expiring.acknowledgement_expires_at is None
    assert lasting.state == AlertState.ACKNOWLEDGED
    last = AlertEvent.objects.filter(alert=expiring).last()
    assert (last.from_state, last.to_state, last.actor_name) == (
        AlertState.ACKNOWLEDGED,
        AlertState.ACTIVE,
        "acknowledgement expiry",
    )
    # Running it again (a second beat, another worker) changes nothing.
    assert expire_acknowledgements(NOW + timedelta(hours=1)) == []
    assert AlertEvent.objects.filter(alert=expiring).count() == 2


def test_disabling_a_rule_closes_its_open_alerts(users):
    rule = make_rule()
    firing = make_alert(rule, fingerprint="a")
    pending = make_alert(rule, state=AlertState.PENDING, fingerprint="b")
    old = make_alert(rule, state=AlertState.RESOLVED, fingerprint="c")

    set_rule_enabled(rule_id=rule.pk, enabled=False, user=users["admin"], source=AuditSource.API, now=NOW)

    rule.refresh_from_db()
    assert rule.enabled is False
    states = dict(Alert.objects.values_list("pk", "state"))
    assert states == {firing.pk: AlertState.RESOLVED, pending.pk: AlertState.INACTIVE, old.pk: AlertState.RESOLVED}
    assert AlertEvent.objects.filter(note="The rule was disabled.").count() == 2
    entry = AuditLogEntry.objects.get(object_type="alerts.alertrule")
    assert (entry.action, entry.after) == (AuditAction.DISABLE, {"enabled": False, "alerts_closed": 2})


def test_enabling_an_enabled_rule_changes_and_audits_nothing(users):
    rule = make_rule()
    set_rule_enabled(rule_id=rule.pk, enabled=True, user=users["admin"], source=AuditSource.API, now=NOW)
    assert not AuditLogEntry.objects.exists()

    set_rule_enabled(rule_id=rule.pk, enabled=False, user=users["admin"], source=AuditSource.API, now=NOW)
    set_rule_enabled(rule_id=rule.pk, enabled=True, user=users["admin"], source=AuditSource.API, now=NOW)
    assert list(AuditLogEntry.objects.order_by("id").values_list("action", flat=True)) == ["disable", "enable"]


def test_status_filter_names_states_groups_and_flags():
    rule = make_rule()
    active = make_alert(rule, fingerprint="a", silenced=True)
    acked = make_alert(rule, state=AlertState.ACKNOWLEDGED, fingerprint="b")
    pending = make_alert(rule, state=AlertState.PENDING, fingerprint="c")
    resolved = make_alert(rule, state=AlertState.RESOLVED, fingerprint="d", silenced=True)

    def ids(*statuses):
        return set(filter_by_status(Alert.objects.all(), statuses).values_list("pk", flat=True))

    assert ids("active") == {active.pk}
    assert ids("firing") == {active.pk, acked.pk}
    assert ids("open") == {active.pk, acked.pk, pending.pk}
    assert ids("resolved", "pending") == {resolved.pk, pending.pk}
    assert ids("silenced") == {active.pk}  # a closed alert is no longer silenced
    with pytest.raises(ValueError, match="Unknown status 'burning'"):
        ids("burning")
