"""Device self-registration: a device that pushes samples or heartbeats with a `device_id`
label, or calls `POST /api/devices/register`, becomes a discovered `device` target; and the
fleet metrics (`device_count`, `device_connectivity`, `firmware_version_distribution`)
computed from the device targets."""

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from ..choices import DiscoverySource, DiscoveryState, TargetKind
from ..ingest import IngestResult, SampleIn, ingest_samples
from ..models import MonitoringTarget
from .models import DiscoveredTarget
from .services import Finding, propose

DEVICE_LABEL = "device_id"
MAX_DEVICE_ID_LENGTH = 200
# A known device is marked seen at most this often per process: a device pushing every
# second costs no query per push, and "online" is judged over minutes anyway.
SEEN_RESOLUTION_S = 60.0
UNKNOWN_VERSION = "unknown"

# device id -> time.monotonic() of the last "seen" this process wrote. Filled after commit.
_seen: dict[str, float] = {}
_SEEN_LIMIT = 1_000_000


@dataclass(frozen=True)
class DeviceReport:
    """What a device says about itself (only `device_id` is required)."""

    device_id: str
    kind: str = ""  # the device's own kind: sensor, gateway, camera...
    firmware_version: str = ""
    parent: str = ""  # the device id of the gateway it reports through

    def finding(self) -> Finding:
        labels = {DEVICE_LABEL: self.device_id}
        if self.kind:
            labels["device_kind"] = self.kind
        if self.firmware_version:
            labels["firmware_version"] = self.firmware_version
        return Finding(
            source=DiscoverySource.DEVICE,
            identity=f"device:{self.device_id}",
            kind=TargetKind.DEVICE,
            name=self.device_id,
            labels=labels,
            parent_ref=self.parent,
        )

    @property
    def says_more_than_its_id(self) -> bool:
        return bool(self.kind or self.firmware_version or self.parent)


def valid_device_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_DEVICE_ID_LENGTH and value.isprintable()


def devices_in_samples(samples: Iterable[SampleIn]) -> dict[str, DeviceReport]:
    """The device ids named by the samples' `device_id` labels (one pass, no query)."""
    found: dict[str, DeviceReport] = {}
    for sample in samples:
        labels = sample.labels
        try:
            device_id = labels.get(DEVICE_LABEL)
        except AttributeError:  # not a mapping: ingest rejects the sample
            continue
        if device_id is not None and device_id not in found and valid_device_id(device_id):
            found[device_id] = DeviceReport(device_id)
    return found


def note_devices_seen(devices: Mapping[str, DeviceReport], *, now: datetime | None = None) -> int:
    """Record that these devices reported in: unknown ones are proposed (or approved when
    devices are auto-approved), known ones marked seen and their heartbeat check fed.
    Costs no query for devices this process marked seen within the last minute, and a few
    queries for the rest of the batch together; returns how many devices were written."""
    if not devices or not settings.MONITORING_DISCOVERY_DEVICES:
        return 0
    clock = time.monotonic()
    due = [
        report
        for device_id, report in devices.items()
        if report.says_more_than_its_id or clock - _seen.get(device_id, -SEEN_RESOLUTION_S) >= SEEN_RESOLUTION_S
    ]
    if not due:
        return 0
    now = now or timezone.now()
    with transaction.atomic():
        propose([report.finding() for report in due], now=now)
        _feed_heartbeats([report.device_id for report in due], now)
    transaction.on_commit(partial(_remember_seen, [report.device_id for report in due], clock))
    return len(due)


def _remember_seen(device_ids: list[str], clock: float) -> None:
    # As ingest's series cache: a callback run by hand inside a test's transaction is
    # about to be rolled back, so it must not be remembered.
    if connection.in_atomic_block:
        return
    if len(_seen) + len(device_ids) > _SEEN_LIMIT:
        _seen.clear()
    _seen.update(dict.fromkeys(device_ids, clock))


def forget_seen_devices() -> None:
    _seen.clear()


def _feed_heartbeats(device_ids: list[str], now: datetime) -> None:
    """A device's heartbeat check counts every report as a ping. One UPDATE for the batch;
    the periodic heartbeat judgement turns a late check healthy again at its next run."""
    from healthchecks.choices import CheckKind, PingKind
    from healthchecks.models import HealthCheck

    targets = DiscoveredTarget.objects.filter(
        identity__in=[f"device:{device_id}" for device_id in device_ids], target__isnull=False
    ).values("target_id")
    HealthCheck.objects.filter(target_id__in=targets, kind=CheckKind.HEARTBEAT).update(
        last_ping_at=now, last_ping_kind=PingKind.SUCCESS
    )


# --- Fleet metrics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetState:
    online: int
    offline: int
    pending: int
    connectivity: Mapping[str, bool]  # device id -> connected
    firmware: Mapping[str, int]  # version -> devices


def fleet_state(now: datetime) -> FleetState:
    """The device targets (enabled, kind `device`) as the fleet metrics count them: a device
    is connected when it reported within MONITORING_DEVICE_OFFLINE_AFTER or, for one that
    never reports itself (configured by hand), when one of its checks is up."""
    from healthchecks.choices import UP_STATUSES

    since = now - timedelta(seconds=settings.MONITORING_DEVICE_OFFLINE_AFTER)
    devices = (
        MonitoringTarget.objects.filter(kind=TargetKind.DEVICE, enabled=True)
        .annotate(
            checks_up=Count(
                "health_checks",
                filter=Q(health_checks__enabled=True, health_checks__status__in=list(UP_STATUSES)),
            )
        )
        .values_list("slug", "labels", "discovery__last_seen_at", "checks_up")
    )
    connectivity: dict[str, bool] = {}
    firmware: dict[str, int] = {}
    for slug, labels, last_seen_at, checks_up in devices:
        labels = labels or {}
        device_id = str(labels.get(DEVICE_LABEL) or slug)
        seen = last_seen_at is not None and last_seen_at >= since
        connectivity[device_id] = seen or (last_seen_at is None and checks_up > 0)
        version = str(labels.get("firmware_version") or UNKNOWN_VERSION)
        firmware[version] = firmware.get(version, 0) + 1
    pending = DiscoveredTarget.objects.devices().filter(state=DiscoveryState.PENDING).count()
    online = sum(connectivity.values())
    return FleetState(online, len(connectivity) - online, pending, connectivity, firmware)


def fleet_samples(state: FleetState, now: datetime) -> list[SampleIn]:
    ts = now.timestamp()
    samples = [
        SampleIn("device_count", {"status": "online"}, float(state.online), ts),
        SampleIn("device_count", {"status": "offline"}, float(state.offline), ts),
        SampleIn("device_count", {"status": "pending"}, float(state.pending), ts),
    ]
    samples += [
        SampleIn("device_connectivity", {DEVICE_LABEL: device_id}, 1.0 if up else 0.0, ts)
        for device_id, up in sorted(state.connectivity.items())
    ]
    samples += [
        SampleIn("firmware_version_distribution", {"version": version}, float(count), ts)
        for version, count in sorted(state.firmware.items())
    ]
    return samples


def ingest_fleet_metrics(*, now: datetime | None = None) -> IngestResult:
    """Compute the fleet metrics from the device targets and ingest them. A firmware
    version no device runs any more drops to 0 rather than keeping its last count."""
    from ..models import Series

    now = now or timezone.now()
    state = fleet_state(now)
    stored = Series.objects.filter(name="firmware_version_distribution").values_list("labels", flat=True)
    gone = {labels.get("version") for labels in stored if labels} - set(state.firmware) - {None}
    if gone:
        state = FleetState(
            state.online,
            state.offline,
            state.pending,
            state.connectivity,
            {**state.firmware, **dict.fromkeys(gone, 0)},
        )
    return ingest_samples(fleet_samples(state, now), now=now)


def device_report_from_query(params: Mapping[str, str]) -> DeviceReport | None:
    """What a heartbeat's query string says about the device (`?device_id=d-17&kind=sensor
    &firmware_version=2.4.1&parent=gw-3`), or None without a valid device_id."""
    device_id = params.get(DEVICE_LABEL)
    if not valid_device_id(device_id):
        return None
    return DeviceReport(
        device_id=device_id,
        kind=str(params.get("kind") or "")[:100],
        firmware_version=str(params.get("firmware_version") or "")[:100],
        parent=str(params.get("parent") or "")[:MAX_DEVICE_ID_LENGTH] if params.get("parent") != device_id else "",
    )
