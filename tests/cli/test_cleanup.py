"""`manage.py cleanup`: exactly what is older than the cutoff goes (samples, health results,
delivered notifications, closed alerts with their events), nothing else; never the audit
log, an undelivered notification, or an alert that still has notifications."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.choices import AlertState
from alerts.models import Alert, AlertEvent, AlertRule
from healthchecks.models import HealthCheck, HealthCheckResult
from monitoring.audit import record_audit
from monitoring.models import AuditLogEntry, Sample
from monitoring.retention import run_cleanup
from notifications.models import Notification, NotificationChannel

from .conftest import make_alert, make_notification, pseudo_terminal, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def aged(users, make_series):
    """Rows on both sides of a 7-day cutoff; `gone` names what a cleanup must remove."""
    now = timezone.now()
    old, recent = now - timedelta(days=10), now - timedelta(days=3)
    ms = lambda moment: int(moment.timestamp() * 1000)  # noqa: E731
    series = make_series(
        "temp", {"device_id": "d1"}, [(ms(old), 1.0), (ms(old + timedelta(hours=1)), 2.0), (ms(recent), 3.0)]
    )

    check = HealthCheck.objects.create(key="http", name="HTTP", kind="http")
    idle = HealthCheck.objects.create(key="idle", name="Idle (disabled)", kind="http", enabled=False)
    old_results = [HealthCheckResult.objects.create(health_check=check, status="healthy", checked_at=old) for _ in "ab"]
    new_result = HealthCheckResult.objects.create(health_check=check, status="healthy", checked_at=recent)
    idle_last = HealthCheckResult.objects.create(
        health_check=idle, status="critical", checked_at=now - timedelta(days=40)
    )
    idle.last_result = idle_last
    idle.save(update_fields=["last_result"])

    rule = AlertRule.objects.create(key="r", name="R", metric="m", comparison=">", threshold=1, severity="high")
    email = NotificationChannel.objects.create(key="email", name="Email", kind="email")
    expired = make_alert(rule, "1", AlertState.RESOLVED, old - timedelta(hours=2), resolved_at=old)
    expired_event = AlertEvent.objects.create(alert=expired, from_state="active", to_state="resolved", at=old)
    expired_note = make_notification(expired, email, "sent", old - timedelta(hours=2))
    dropped = make_alert(rule, "2", AlertState.INACTIVE, None)
    Alert.objects.filter(pk=dropped.pk).update(updated_at=old)
    # Closed long ago but a notification is still to be delivered: both stay.
    held = make_alert(rule, "3", AlertState.RESOLVED, old - timedelta(hours=2), resolved_at=old)
    held_note = make_notification(held, email, "pending", old)
    # Closed long ago with a notification inside the retention: both stay.
    late = make_alert(rule, "4", AlertState.RESOLVED, old - timedelta(hours=2), resolved_at=old)
    late_note = make_notification(late, email, "sent", recent)
    resolved_recently = make_alert(rule, "5", AlertState.RESOLVED, old, resolved_at=recent)
    firing_for_long = make_alert(rule, "6", AlertState.ACTIVE, now - timedelta(days=20))
    firing_event = AlertEvent.objects.create(alert=firing_for_long, from_state="pending", to_state="active", at=old)
    test_sent = make_notification(None, email, "sent", old)
    test_failed = make_notification(None, email, "failed", old)
    test_sending = make_notification(None, email, "sending", old)
    test_new = make_notification(None, email, "failed", recent)
    audit = record_audit(actor=users["admin"], source="cli", action="update", object_repr="old", at=old)

    return {
        "series": series,
        "gone": {
            "samples": 2,
            "health results": 2,
            "notifications": 3,
            "resolved alerts": 2,
        },
        "kept": {
            "results": {new_result.pk, idle_last.pk},
            "alerts": {held.pk, late.pk, resolved_recently.pk, firing_for_long.pk},
            "events": {firing_event.pk},
            "notifications": {held_note.pk, late_note.pk, test_sending.pk, test_new.pk},
            "audit": audit.pk,
        },
        "removed": {
            "results": {r.pk for r in old_results},
            "alerts": {expired.pk, dropped.pk},
            "events": {expired_event.pk},
            "notifications": {expired_note.pk, test_sent.pk, test_failed.pk},
        },
    }


def assert_nothing_removed(aged) -> None:
    assert Sample.objects.count() == 3
    assert (
        set(HealthCheckResult.objects.values_list("pk", flat=True))
        == aged["kept"]["results"] | aged["removed"]["results"]
    )
    assert set(Alert.objects.values_list("pk", flat=True)) >= aged["kept"]["alerts"] | aged["removed"]["alerts"]
    assert set(Notification.objects.values_list("pk", flat=True)) == (
        aged["kept"]["notifications"] | aged["removed"]["notifications"]
    )


def test_cleanup_removes_exactly_what_is_older_than_the_cutoff(aged):
    outcome = run("cleanup", "--days", "7")

    assert outcome.code == 0
    for what, count in aged["gone"].items():
        assert f"Removed {count} {what}." in outcome.stdout
    assert [ts for ts in Sample.objects.values_list("value", flat=True)] == [3.0]
    assert set(HealthCheckResult.objects.values_list("pk", flat=True)) == aged["kept"]["results"]
    assert set(Alert.objects.exclude(fingerprint="p").values_list("pk", flat=True)) == aged["kept"]["alerts"]
    assert set(AlertEvent.objects.values_list("pk", flat=True)) == aged["kept"]["events"]
    assert set(Notification.objects.values_list("pk", flat=True)) == aged["kept"]["notifications"]
    assert AuditLogEntry.objects.filter(pk=aged["kept"]["audit"]).exists()  # never the audit log
    entry = AuditLogEntry.objects.get(object_type="retention")
    assert entry.after["notifications"] == 3 and entry.after["resolved alerts"] == 2
    assert entry.actor_name.endswith("(shell)")  # the OS account, as other maintenance commands


def test_dry_run_counts_the_same_and_removes_nothing(aged):
    outcome = run("cleanup", "--days", "7", "--dry-run", "--format", "json")

    data = json.loads(outcome.stdout)
    assert data["dry_run"] is True
    assert data["counts"] == {what.replace(" ", "_"): count for what, count in aged["gone"].items()}
    assert_nothing_removed(aged)
    assert not AuditLogEntry.objects.filter(object_type="retention").exists()


def test_a_cutoff_before_everything_removes_nothing(aged):
    data = json.loads(run("cleanup", "--days", "60", "--format", "json").stdout)

    assert set(data["counts"].values()) == {0}
    assert_nothing_removed(aged)


def test_progress_is_told_every_batch(aged, settings):
    from monitoring.models import GlobalSettings

    config = GlobalSettings.load()
    config.batch_size = 1
    config.save()
    told: dict[str, int] = {}

    report = run_cleanup(
        days=7, now=timezone.now(), progress=lambda what, rows: told.__setitem__(what, told.get(what, 0) + rows)
    )

    assert report.counts == aged["gone"]
    assert {what: rows for what, rows in told.items() if rows} == aged["gone"]


def test_a_terminal_gets_a_progress_bar_then_the_counts(aged):
    with pseudo_terminal() as terminal:
        from django.core.management import call_command

        call_command("cleanup", "--days", "7", stdout=terminal.screen)

    assert "health results" in terminal.text and "━" in terminal.text  # the bars
    assert "2/2" in terminal.text and "3/3" in terminal.text
    assert "Removed 3 notifications." in terminal.text
    assert Sample.objects.count() == 1


def test_cleanup_as_a_named_admin_is_audited_as_them(aged, users):
    run("cleanup", "--days", "7", "--user", "admin")

    assert AuditLogEntry.objects.get(object_type="retention").actor_name == "admin"


def test_cleanup_as_an_operator_is_refused(aged):
    outcome = run("cleanup", "--days", "7", "--user", "operator")

    assert outcome.code == 1
    assert "'operator' has the operator role; to remove old data needs the admin role" in outcome.error
    assert_nothing_removed(aged)


@pytest.mark.parametrize("days", ["0", "-1", "a week"])
def test_bad_days_is_bad_usage(db, days):
    outcome = run("cleanup", "--days", days)

    assert outcome.code == 2
    assert "--days" in outcome.error
