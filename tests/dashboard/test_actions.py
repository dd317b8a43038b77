"""What operators do from the dashboard goes through the alerts and health check services
with audit source `dashboard`; anyone else is refused by the server whatever the page showed."""

import pytest
from django.urls import reverse

from alerts.choices import AlertState
from alerts.models import Alert, Silence
from monitoring.choices import AuditAction, AuditSource, DiscoverySource, DiscoveryState, TargetKind
from monitoring.discovery.models import DiscoveredTarget
from monitoring.models import AuditLogEntry, MonitoringTarget


def active_alert(fleet) -> Alert:
    return next(a for a in fleet["alerts"] if a.state == AlertState.ACTIVE)


@pytest.mark.django_db
def test_operator_acknowledges_from_the_list_with_an_audit_entry(fleet, login) -> None:
    alert = active_alert(fleet)
    response = login("operator").post(
        reverse("dashboard-alert-acknowledge", args=[alert.pk]), {"note": "on it"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200 and b"acknowledged" in response.content
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED and alert.acknowledged_by.username == "operator"
    entry = AuditLogEntry.objects.filter(object_type="alerts.alert", object_id=str(alert.pk)).latest("id")
    assert entry.source == AuditSource.DASHBOARD and entry.action == "acknowledge" and entry.ip == "127.0.0.1"


@pytest.mark.django_db
def test_plain_form_post_redirects_back_with_a_message(fleet, login) -> None:
    alert = active_alert(fleet)
    client = login("operator")
    response = client.post(
        reverse("dashboard-alert-resolve", args=[alert.pk]), {"next": "/alerts/?tab=firing"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/alerts/?tab=firing"
    assert f"Alert {alert.pk} resolved." in response.content.decode()
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED


@pytest.mark.django_db
def test_acknowledging_a_resolved_alert_is_a_conflict(fleet, login) -> None:
    alert = next(a for a in fleet["alerts"] if a.state == AlertState.RESOLVED)
    response = login("operator").post(
        reverse("dashboard-alert-acknowledge", args=[alert.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 409 and b"only firing alerts" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "norole"])
def test_forged_posts_of_others_are_refused(fleet, login, role: str) -> None:
    alert = active_alert(fleet)
    client = login(role)
    for name in ("dashboard-alert-acknowledge", "dashboard-alert-resolve", "dashboard-alert-silence"):
        assert client.post(reverse(name, args=[alert.pk]), {"hours": 1, "scope": "rule"}).status_code == 403
    assert client.post(reverse("dashboard-check-run", args=[fleet["checks"][0].pk])).status_code == 403
    alert.refresh_from_db()
    assert alert.state == AlertState.ACTIVE and not Silence.objects.exists()


@pytest.mark.django_db
def test_post_without_csrf_token_is_refused(fleet, users) -> None:
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(users["operator"])
    alert = active_alert(fleet)
    assert client.post(reverse("dashboard-alert-acknowledge", args=[alert.pk])).status_code == 403
    alert.refresh_from_db()
    assert alert.state == AlertState.ACTIVE


@pytest.mark.django_db
def test_silence_this_alert_matches_its_series_labels(fleet, login) -> None:
    alert = active_alert(fleet)
    response = login("operator").post(
        reverse("dashboard-alert-silence", args=[alert.pk]),
        {"hours": 4, "scope": "alert", "comment": "maintenance"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    silence = Silence.objects.get()
    assert silence.rule_id == alert.rule_id and silence.comment == "maintenance"
    assert {m["name"]: m["value"] for m in silence.matchers} == alert.labels
    assert round((silence.ends_at - silence.starts_at).total_seconds()) == 4 * 3600
    alert.refresh_from_db()
    assert alert.silenced
    assert AuditLogEntry.objects.filter(action="silence", source=AuditSource.DASHBOARD).exists()


@pytest.mark.django_db
def test_silence_refuses_a_duration_not_offered(fleet, login) -> None:
    alert = active_alert(fleet)
    response = login("operator").post(
        reverse("dashboard-alert-silence", args=[alert.pk]), {"hours": 9999, "scope": "rule"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert response.status_code == 400 and not Silence.objects.exists()


@pytest.mark.django_db
def test_run_now_runs_the_check_and_audits_it(fleet, login) -> None:
    check = fleet["checks"][0]  # a TCP connect to 127.0.0.1:1, refused at once
    response = login("operator").post(reverse("dashboard-check-run", args=[check.pk]), headers={"HX-Request": "true"})
    assert response.status_code == 200 and check.name.encode() in response.content
    check.refresh_from_db()
    assert check.results.count() == 6 and check.last_result.status == "critical"
    assert AuditLogEntry.objects.filter(action="run", source=AuditSource.DASHBOARD, object_id=str(check.pk)).exists()


# --- Discovered targets: admins approve or reject from the Targets page -------------------------


def make_discovered(name: str = "Sensor 7", identity: str = "device:sensor-7", **fields) -> DiscoveredTarget:
    return DiscoveredTarget.objects.create(
        source=fields.pop("source", DiscoverySource.DEVICE),
        identity=identity,
        kind=fields.pop("kind", TargetKind.DEVICE),
        name=name,
        **fields,
    )


@pytest.mark.django_db
def test_admin_approves_a_discovered_target_with_a_dashboard_audit_entry(users, login) -> None:
    row = make_discovered()
    response = login("admin").post(
        reverse("dashboard-discovered-approve", args=[row.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200 and b"approved as target" in response.content
    row.refresh_from_db()
    assert row.state == DiscoveryState.APPROVED and row.decided_by == "admin"
    target = MonitoringTarget.objects.get(pk=row.target_id)
    assert target.name == "Sensor 7" and target.health_checks.count() == 1
    entry = AuditLogEntry.objects.filter(action=AuditAction.APPROVE).latest("id")
    assert entry.source == AuditSource.DASHBOARD and entry.actor_name == "admin" and entry.ip == "127.0.0.1"
    assert entry.object_id == str(target.pk)


@pytest.mark.django_db
def test_admin_rejects_a_discovered_target_from_a_plain_form(users, login) -> None:
    row = make_discovered()
    response = login("admin").post(
        reverse("dashboard-discovered-reject", args=[row.pk]), {"next": "/targets/"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/targets/"
    assert "Sensor 7 rejected" in response.content.decode()
    row.refresh_from_db()
    assert row.state == DiscoveryState.REJECTED and row.target_id is None
    assert not MonitoringTarget.objects.exists()
    entry = AuditLogEntry.objects.get(action=AuditAction.REJECT)
    assert entry.source == AuditSource.DASHBOARD and entry.after == {"state": "rejected"}


@pytest.mark.django_db
def test_rejecting_an_approved_discovered_target_is_a_conflict_with_its_reason(users, login) -> None:
    row = make_discovered()
    client = login("admin")
    client.post(reverse("dashboard-discovered-approve", args=[row.pk]))
    response = client.post(reverse("dashboard-discovered-reject", args=[row.pk]), headers={"HX-Request": "true"})
    assert response.status_code == 409
    assert "disable or delete that target instead" in response.content.decode()
    row.refresh_from_db()
    assert row.state == DiscoveryState.APPROVED and MonitoringTarget.objects.count() == 1


@pytest.mark.django_db
def test_deciding_a_discovered_target_that_does_not_exist_is_not_found(users, login) -> None:
    client = login("admin")
    for name in ("dashboard-discovered-approve", "dashboard-discovered-reject"):
        response = client.post(reverse(name, args=[999_999]), headers={"HX-Request": "true"})
        assert response.status_code == 404 and b"no discovered target 999999" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "operator", "norole"])
def test_only_admins_may_approve_or_reject_discovered_targets(users, login, role: str) -> None:
    row = make_discovered()
    client = login(role)
    for name in ("dashboard-discovered-approve", "dashboard-discovered-reject"):
        assert client.post(reverse(name, args=[row.pk])).status_code == 403
    row.refresh_from_db()
    assert row.state == DiscoveryState.PENDING and row.decided_by == ""
    assert not MonitoringTarget.objects.exists()
    assert not AuditLogEntry.objects.filter(action__in=[AuditAction.APPROVE, AuditAction.REJECT]).exists()


@pytest.mark.django_db
def test_approve_needs_post_and_a_csrf_token(users) -> None:
    from django.test import Client

    row = make_discovered()
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["admin"])
    url = reverse("dashboard-discovered-approve", args=[row.pk])
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403
    row.refresh_from_db()
    assert row.state == DiscoveryState.PENDING and not MonitoringTarget.objects.exists()
