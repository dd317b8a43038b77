"""Discovered targets in the admin: listed with a state filter for pending approvals, approved
or rejected by actions (each audited as the admin), never edited by hand."""

import pytest
from django.test import Client

from monitoring.choices import AuditAction, AuditSource, DiscoveryState
from monitoring.discovery.devices import DeviceReport, note_devices_seen
from monitoring.discovery.models import DiscoveredTarget
from monitoring.models import AuditLogEntry, MonitoringTarget

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/monitoring/discoveredtarget/"


@pytest.fixture
def pending(db) -> list[DiscoveredTarget]:
    note_devices_seen({name: DeviceReport(name, kind="sensor") for name in ("s-1", "s-2", "s-3")})
    return list(DiscoveredTarget.objects.order_by("identity"))


def client_of(user) -> Client:
    client = Client(REMOTE_ADDR="192.0.2.10")
    client.force_login(user)
    return client


def test_pending_approvals_are_listed_and_approved_or_rejected_by_actions(users, pending):
    admin = client_of(users["admin"])
    page = admin.get(CHANGELIST, {"state__exact": DiscoveryState.PENDING})
    assert page.status_code == 200
    assert all(row.name in page.content.decode() for row in pending)

    response = admin.post(
        CHANGELIST, {"action": "approve_selected", "_selected_action": [pending[0].pk, pending[1].pk]}
    )
    assert response.status_code == 302
    response = admin.post(CHANGELIST, {"action": "reject_selected", "_selected_action": [pending[2].pk]})
    assert response.status_code == 302
    states = dict(DiscoveredTarget.objects.values_list("identity", "state"))
    assert states == {
        "device:s-1": DiscoveryState.APPROVED,
        "device:s-2": DiscoveryState.APPROVED,
        "device:s-3": DiscoveryState.REJECTED,
    }
    assert set(MonitoringTarget.objects.values_list("slug", flat=True)) == {"s-1", "s-2"}
    decisions = AuditLogEntry.objects.filter(action__in=[AuditAction.APPROVE, AuditAction.REJECT])
    assert sorted((e.action, e.source, e.actor_name, e.ip) for e in decisions) == [
        (AuditAction.APPROVE, AuditSource.ADMIN, "admin", "192.0.2.10"),
        (AuditAction.APPROVE, AuditSource.ADMIN, "admin", "192.0.2.10"),
        (AuditAction.REJECT, AuditSource.ADMIN, "admin", "192.0.2.10"),
    ]


def test_rows_are_read_only_and_operators_cannot_approve(users, make_user, pending):
    admin = client_of(users["admin"])
    response = admin.post(f"{CHANGELIST}{pending[0].pk}/change/", {"state": DiscoveryState.APPROVED})
    assert response.status_code == 403
    operator = client_of(make_user("staff-operator", "operator", is_staff=True))
    assert operator.get(CHANGELIST).status_code == 200  # operators see what awaits approval
    operator.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [pending[0].pk]})
    assert not MonitoringTarget.objects.exists()
    assert DiscoveredTarget.objects.get(pk=pending[0].pk).state == DiscoveryState.PENDING
