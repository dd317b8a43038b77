"""Device self-registration: by a first heartbeat, by `POST /api/devices/register` and by
pushed samples with a `device_id` label; approval into a `device` target with its gateway as
parent and a heartbeat check; the fleet metrics computed from the device targets."""

from datetime import timedelta

import pytest
from django.utils import timezone

from healthchecks.choices import CheckKind
from healthchecks.models import HealthCheck
from monitoring.choices import AuditAction, AuditSource, DiscoveryState, TargetKind
from monitoring.discovery import devices
from monitoring.discovery.devices import DeviceReport, devices_in_samples, ingest_fleet_metrics, note_devices_seen
from monitoring.discovery.models import DiscoveredTarget
from monitoring.ingest import SampleIn
from monitoring.models import AuditLogEntry, MonitoringTarget, Series

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_seen_cache():
    devices.forget_seen_devices()
    yield
    devices.forget_seen_devices()


@pytest.fixture
def fleet_heartbeat(db) -> HealthCheck:
    """A heartbeat check the whole fleet pings (its uuid is in the firmware)."""
    return HealthCheck.objects.create(name="Fleet", key="fleet", kind=CheckKind.HEARTBEAT, period=60, grace=60)


def last_value(metric: str, **labels) -> float:
    (value,) = [series.last_value for series in Series.objects.filter(name=metric) if series.labels == labels]
    return value


def test_device_is_discovered_by_its_first_heartbeat_and_approved_by_an_admin(fleet_heartbeat, api_client, client_for):
    response = api_client.get(
        f"/api/heartbeat/{fleet_heartbeat.ping_uuid}",
        {"device_id": "sensor-17", "kind": "sensor", "firmware_version": "2.4.1", "parent": "gw-3"},
    )
    assert response.status_code == 200
    found = DiscoveredTarget.objects.get()
    assert (found.identity, found.state, found.kind, found.parent_ref) == (
        "device:sensor-17",
        DiscoveryState.PENDING,
        TargetKind.DEVICE,
        "gw-3",
    )
    assert found.labels == {"device_id": "sensor-17", "device_kind": "sensor", "firmware_version": "2.4.1"}
    assert not MonitoringTarget.objects.exists()  # awaiting approval

    assert client_for("operator").post(f"/api/discovered-targets/{found.pk}/approve").status_code == 403
    response = client_for("admin").post(f"/api/discovered-targets/{found.pk}/approve")
    assert response.status_code == 200, response.content
    assert response.json()["discovered_target"]["target"] == "sensor-17"
    target = MonitoringTarget.objects.get(slug="sensor-17")
    assert (target.kind, target.labels["firmware_version"], target.parent) == (TargetKind.DEVICE, "2.4.1", None)
    heartbeat = target.health_checks.get()
    assert (heartbeat.kind, heartbeat.period + heartbeat.grace) == (CheckKind.HEARTBEAT, 300)
    entry = AuditLogEntry.objects.get(action=AuditAction.APPROVE)
    assert (entry.source, entry.actor_name, entry.api_key_name, entry.object_id) == (
        AuditSource.API,
        "admin",
        "admin-key",
        str(target.pk),
    )

    # The gateway registers later: the device gets it as its parent when it is approved.
    client_for("viewer").post("/api/devices/register", {"device_id": "gw-3", "kind": "gateway"}, format="json")
    gateway_row = DiscoveredTarget.objects.get(identity="device:gw-3")
    client_for("admin").post(f"/api/discovered-targets/{gateway_row.pk}/approve")
    target.refresh_from_db()
    assert target.parent == MonitoringTarget.objects.get(slug="gw-3")


def test_registration_with_auto_approval_makes_a_device_target_under_its_gateway(settings, client_for):
    settings.MONITORING_DISCOVERY_AUTO_APPROVE = ["device"]
    device_key = client_for("viewer")
    gateway = device_key.post(
        "/api/devices/register", {"device_id": "gw-1", "kind": "gateway", "firmware_version": "1.0"}, format="json"
    )
    assert gateway.status_code == 200, gateway.content
    assert gateway.json()["device"]["state"] == DiscoveryState.APPROVED
    response = device_key.post(
        "/api/devices/register",
        {"device_id": "cam-9", "kind": "camera", "firmware_version": "3.1", "parent": "gw-1"},
        format="json",
    )
    body = response.json()["device"]
    assert (body["state"], body["target"], body["parent_ref"]) == (DiscoveryState.APPROVED, "cam-9", "gw-1")
    camera = MonitoringTarget.objects.select_related("parent").get(slug="cam-9")
    assert camera.parent.slug == "gw-1"  # so a gateway's outage suppresses its devices' alerts
    assert camera.health_checks.get().kind == CheckKind.HEARTBEAT
    approvals = AuditLogEntry.objects.filter(action=AuditAction.APPROVE).order_by("id")
    assert [(e.object_repr, e.actor_name, e.source) for e in approvals] == [
        ("gw-1", "auto-approve", AuditSource.SYSTEM),
        ("cam-9", "auto-approve", AuditSource.SYSTEM),
    ]


def test_registering_again_updates_the_firmware_of_the_approved_target(settings, client_for):
    settings.MONITORING_DISCOVERY_AUTO_APPROVE = ["all"]
    client = client_for("viewer")
    client.post("/api/devices/register", {"device_id": "d-1", "firmware_version": "1.0"}, format="json")
    client.post("/api/devices/register", {"device_id": "d-1", "firmware_version": "1.1"}, format="json")
    assert MonitoringTarget.objects.get(slug="d-1").labels["firmware_version"] == "1.1"
    assert DiscoveredTarget.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "device_id"),
        ({"device_id": ""}, "device_id"),
        ({"device_id": "x" * 201}, "device_id"),
        ({"device_id": "gw", "parent": "gw"}, "parent"),
    ],
)
def test_registration_refuses_bad_input(client_for, body, field):
    response = client_for("viewer").post("/api/devices/register", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    assert not DiscoveredTarget.objects.exists()


def test_registration_needs_a_key_that_may_write(client_for, users):
    from monitoring.apikeys import create_api_key

    assert client_for(None).post("/api/devices/register", {"device_id": "d"}, format="json").status_code == 401
    read_only = create_api_key(user=users["admin"], name="ro", read_only=True).plain
    client = client_for(None)
    client.credentials(HTTP_X_API_KEY=read_only)
    assert client.post("/api/devices/register", {"device_id": "d"}, format="json").status_code == 403
    assert not DiscoveredTarget.objects.exists()


def test_pushed_samples_with_a_device_id_register_their_devices(client_for):
    samples = [
        {"metric": "temperature_celsius", "labels": {"device_id": f"d-{n % 3}"}, "value": 20.0 + n} for n in range(30)
    ]
    response = client_for("viewer").post("/api/metrics", {"samples": samples}, format="json")
    assert response.status_code == 200
    assert response.json()["accepted"] == 30
    assert sorted(DiscoveredTarget.objects.values_list("identity", flat=True)) == [
        "device:d-0",
        "device:d-1",
        "device:d-2",
    ]


@pytest.mark.django_db(transaction=True)  # "seen" is remembered only once the transaction has committed
def test_a_push_of_ten_thousand_samples_costs_a_few_queries_then_none(
    django_assert_max_num_queries, django_assert_num_queries
):
    samples = [SampleIn("signal_dbm", {"device_id": f"d-{n % 50}", "n": str(n)}, -60.0) for n in range(10_000)]
    reported = devices_in_samples(samples)
    assert len(reported) == 50
    with django_assert_max_num_queries(10):
        assert note_devices_seen(reported) == 50
    assert DiscoveredTarget.objects.count() == 50
    # Known and marked seen within the minute: the next push costs no query at all.
    with django_assert_num_queries(0):
        assert note_devices_seen(devices_in_samples(samples)) == 0


def test_a_rejected_device_is_not_proposed_again(client_for):
    client_for("viewer").post("/api/devices/register", {"device_id": "rogue"}, format="json")
    row = DiscoveredTarget.objects.get()
    assert client_for("admin").post(f"/api/discovered-targets/{row.pk}/reject").status_code == 200
    note_devices_seen({"rogue": DeviceReport("rogue", firmware_version="9")})
    row.refresh_from_db()
    assert row.state == DiscoveryState.REJECTED
    assert not MonitoringTarget.objects.exists()
    assert AuditLogEntry.objects.get(action=AuditAction.REJECT).object_repr.startswith("rogue")


def test_reports_feed_the_device_heartbeat(settings, client_for):
    settings.MONITORING_DISCOVERY_AUTO_APPROVE = ["device"]
    note_devices_seen({"d-5": DeviceReport("d-5", firmware_version="1")})
    heartbeat = HealthCheck.objects.get(target__slug="d-5")
    HealthCheck.objects.filter(pk=heartbeat.pk).update(last_ping_at=None)
    devices.forget_seen_devices()
    client_for("viewer").post(
        "/api/metrics", {"samples": [{"metric": "up", "labels": {"device_id": "d-5"}, "value": 1}]}, format="json"
    )
    heartbeat.refresh_from_db()
    assert heartbeat.last_ping_at is not None and timezone.now() - heartbeat.last_ping_at < timedelta(seconds=30)


def test_fleet_metrics_are_computed_from_the_device_targets(settings):
    settings.MONITORING_DISCOVERY_AUTO_APPROVE = ["device"]
    now = timezone.now()
    note_devices_seen({"a": DeviceReport("a", firmware_version="1.0")}, now=now)
    note_devices_seen({"b": DeviceReport("b", firmware_version="1.0")}, now=now - timedelta(hours=1))
    note_devices_seen({"c": DeviceReport("c", firmware_version="2.0")}, now=now)
    settings.MONITORING_DISCOVERY_AUTO_APPROVE = []
    note_devices_seen({"d": DeviceReport("d")}, now=now)  # pending: counted as pending only
    # A device configured by hand (no reports of its own) is online while a check is up.
    MonitoringTarget.objects.create(name="Old", slug="old", kind=TargetKind.DEVICE, labels={"device_id": "old"})

    ingest_fleet_metrics(now=now)
    assert last_value("device_count", status="online") == 2
    assert last_value("device_count", status="offline") == 2
    assert last_value("device_count", status="pending") == 1
    assert [last_value("device_connectivity", device_id=d) for d in ("a", "b", "c", "old")] == [1, 0, 1, 0]
    assert last_value("firmware_version_distribution", version="1.0") == 2
    assert last_value("firmware_version_distribution", version="2.0") == 1
    assert last_value("firmware_version_distribution", version="unknown") == 1

    # Every 2.0 device upgrades: 2.0 drops to 0 instead of keeping its last count.
    note_devices_seen({"c": DeviceReport("c", firmware_version="2.1")}, now=now)
    ingest_fleet_metrics(now=now + timedelta(seconds=1))
    assert last_value("firmware_version_distribution", version="2.0") == 0
    assert last_value("firmware_version_distribution", version="2.1") == 1


def test_device_discovery_can_be_switched_off(settings):
    settings.MONITORING_DISCOVERY_DEVICES = False
    assert note_devices_seen({"d": DeviceReport("d")}) == 0
    assert not DiscoveredTarget.objects.exists()
