"""Writes of discovery: proposing what was found (an upsert by identity), approving it into a
target with default health checks, rejecting it, and syncing a source's current listing."""

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from ..audit import record_audit, snapshot
from ..choices import AuditAction, AuditSource, DiscoverySource, DiscoveryState, TargetKind
from ..models import MonitoringTarget
from .models import DiscoveredTarget

log = logging.getLogger("discovery")

AUTO_APPROVER = "auto-approve"
# A discovered HTTP service is up while it answers without a server error: its front page
# may well be a 404 or a login redirect.
DISCOVERED_HTTP_EXPECTED_STATUS = "100-499"


class DiscoveryError(Exception):
    """A discovered target that cannot be approved or rejected as asked."""


@dataclass(frozen=True)
class Finding:
    """Something a discovery source found, before it is stored."""

    source: DiscoverySource
    identity: str
    kind: TargetKind
    name: str
    endpoint: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    parent_ref: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SyncReport:
    proposed: tuple[int, ...] = ()  # ids of rows created by this sync
    approved: tuple[int, ...] = ()  # ids approved automatically
    updated: int = 0
    withdrawn: int = 0  # pending proposals no longer listed, removed
    missing: int = 0  # approved targets no longer listed, flagged


def auto_approves(source: str) -> bool:
    """Whether targets found by `source` become targets without an admin's approval."""
    wanted = {item.strip().lower() for item in settings.MONITORING_DISCOVERY_AUTO_APPROVE}
    return "all" in wanted or source in wanted


def slug_for(finding_identity: str) -> str:
    """The slug a discovered target's target gets: its identity, slugified, at most 100 characters."""
    source, _, rest = finding_identity.partition(":")
    prefix = {"device": "", "network": "net-", "file_sd": "sd-", "http_sd": "sd-"}.get(source, "")
    return slugify(f"{prefix}{rest.replace('.', '-').replace(':', '-')}")[:100] or "discovered"


# --- Proposals ------------------------------------------------------------------------------


FOLLOWED_FIELDS = ("kind", "name", "endpoint", "labels", "parent_ref", "details")


def _apply_finding(row: DiscoveredTarget, finding: Finding) -> bool:
    """Copy what changed in `finding` onto `row` (not saved); whether anything did."""
    changed = False
    for name in ("kind", "name", "endpoint", "parent_ref"):
        value = getattr(finding, name)
        if value and getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    labels = {**row.labels, **dict(finding.labels)}
    if labels != row.labels:
        row.labels = labels
        changed = True
    details = {**row.details, **dict(finding.details)}
    if details != row.details:
        row.details = details
        changed = True
    return changed


def propose(findings: Iterable[Finding], *, now: datetime) -> SyncReport:
    """Store findings: new identities become pending proposals (approved at once when the
    source is auto-approved), known ones are marked seen and take changed labels. A rejected
    identity stays rejected. Approved targets follow label and endpoint changes."""
    findings = {finding.identity: finding for finding in findings}
    if not findings:
        return SyncReport()
    proposed, approved, updated = [], [], 0
    with transaction.atomic():
        rows = {row.identity: row for row in DiscoveredTarget.objects.filter(identity__in=list(findings))}
        new = [
            DiscoveredTarget(
                source=finding.source,
                identity=identity,
                kind=finding.kind,
                name=finding.name[:200],
                endpoint=finding.endpoint[:500],
                labels=dict(finding.labels),
                parent_ref=finding.parent_ref[:200],
                details=dict(finding.details),
                first_seen_at=now,
                last_seen_at=now,
            )
            for identity, finding in findings.items()
            if identity not in rows
        ]
        if new:
            # Two processes may find the same thing at once: the unique identity keeps one.
            DiscoveredTarget.objects.bulk_create(new, ignore_conflicts=True)
            created = DiscoveredTarget.objects.filter(identity__in=[row.identity for row in new], first_seen_at=now)
            proposed = [row.pk for row in created]
            names = [row.identity for row in new]
            log.info("discovered %d: %s", len(names), ", ".join(names[:20]) + (", ..." if len(names) > 20 else ""))
        unchanged = []
        for identity, row in rows.items():
            if not _apply_finding(row, findings[identity]) and row.missing_since is None:
                unchanged.append(row.pk)
                continue
            row.last_seen_at = now
            row.missing_since = None
            row.save(update_fields=[*FOLLOWED_FIELDS, "last_seen_at", "missing_since"])
            updated += 1
            if row.target_id is not None:
                _follow_changes(row)
        if unchanged:
            DiscoveredTarget.objects.filter(pk__in=unchanged).update(last_seen_at=now)
    for row in DiscoveredTarget.objects.filter(pk__in=proposed).order_by("pk"):
        if auto_approves(row.source):
            approve_discovered(discovered=row, actor=None, source=AuditSource.SYSTEM)
            approved.append(row.pk)
    return SyncReport(proposed=tuple(proposed), approved=tuple(approved), updated=updated)


def _follow_changes(row: DiscoveredTarget) -> None:
    """An approved target takes the labels and endpoint its source now reports (a device's
    new firmware version, a relabelled file_sd entry)."""
    target = MonitoringTarget.objects.select_for_update().filter(pk=row.target_id).first()
    if target is None:
        return
    labels = {**target.labels, **row.labels}
    fields = []
    if labels != target.labels:
        target.labels = labels
        fields.append("labels")
    if row.endpoint and row.source != DiscoverySource.DEVICE and target.endpoint != row.endpoint:
        target.endpoint = row.endpoint
        fields.append("endpoint")
    if fields:
        target.save(update_fields=[*fields, "updated_at"])
        log.info("target %s follows its discovery source: %s changed", target.slug, ", ".join(fields))


def sync_listing(source: DiscoverySource, findings: Iterable[Finding], *, now: datetime) -> SyncReport:
    """Make `source`'s rows match its complete current listing (file_sd, http_sd): new and
    changed findings as in `propose`; pending proposals it no longer lists are withdrawn;
    approved ones are flagged `missing_since` (their targets stay: removing configuration
    is an admin's decision)."""
    findings = list(findings)
    report = propose(findings, now=now)
    listed = {finding.identity for finding in findings}
    gone = DiscoveredTarget.objects.filter(source=source).exclude(identity__in=listed)
    withdrawn, _ = gone.filter(state=DiscoveryState.PENDING).delete()
    missing = gone.filter(state=DiscoveryState.APPROVED, missing_since__isnull=True).update(missing_since=now)
    return SyncReport(report.proposed, report.approved, report.updated, withdrawn, missing)


# --- Approval -----------------------------------------------------------------------------------


def _actor_name(actor: User | AnonymousUser | str | None) -> str:
    if isinstance(actor, User):
        return actor.get_username()
    return str(actor) if actor else AUTO_APPROVER


def approve_discovered(
    *,
    discovered: DiscoveredTarget,
    actor: User | str | None,
    source: AuditSource | str,
    ip: str | None = None,
    api_key_name: str = "",
    now: datetime | None = None,
) -> MonitoringTarget:
    """Turn a discovered target into a target (or adopt the existing one with its slug),
    set its parent gateway, create its default health checks and write one audit entry.
    Approving an approved one returns its target; a rejected one can be approved too."""
    now = now or timezone.now()
    with transaction.atomic():
        row = DiscoveredTarget.objects.select_for_update().get(pk=discovered.pk)
        if row.state == DiscoveryState.APPROVED and row.target_id is not None:
            return row.target
        target, created = _target_for(row)
        checks = _create_default_checks(row, target) if created or not target.health_checks.exists() else []
        _adopt_children(row, target)
        row.state = DiscoveryState.APPROVED
        row.target = target
        row.decided_at = now
        row.decided_by = _actor_name(actor)
        row.save(update_fields=["state", "target", "decided_at", "decided_by"])
        record_audit(
            actor=actor or AUTO_APPROVER,
            source=source,
            action=AuditAction.APPROVE,
            obj=target,
            after={
                **snapshot(target, exclude=("updated_at",)),
                "discovered": row.identity,
                "health_checks": [check.key for check in checks],
            },
            api_key_name=api_key_name,
            ip=ip,
            at=now,
        )
    discovered.refresh_from_db()
    log.info("approved %s as target %s (%s)", row.identity, target.slug, row.decided_by)
    return target


def reject_discovered(
    *,
    discovered: DiscoveredTarget,
    actor: User | str | None,
    source: AuditSource | str,
    ip: str | None = None,
    api_key_name: str = "",
    now: datetime | None = None,
) -> None:
    """Mark a pending discovered target rejected: it is not proposed again. An approved
    one is refused (its target is configuration now: disable or delete it instead)."""
    now = now or timezone.now()
    with transaction.atomic():
        row = DiscoveredTarget.objects.select_for_update().get(pk=discovered.pk)
        if row.state == DiscoveryState.APPROVED:
            raise DiscoveryError(
                f"{row.identity} is approved as target {row.target.slug if row.target else '?'}; "
                "disable or delete that target instead"
            )
        if row.state == DiscoveryState.REJECTED:
            return
        row.state = DiscoveryState.REJECTED
        row.decided_at = now
        row.decided_by = _actor_name(actor)
        row.save(update_fields=["state", "decided_at", "decided_by"])
        record_audit(
            actor=actor,
            source=source,
            action=AuditAction.REJECT,
            obj=row,
            before={"state": DiscoveryState.PENDING.value},
            after={"state": DiscoveryState.REJECTED.value},
            api_key_name=api_key_name,
            ip=ip,
            at=now,
        )
    discovered.refresh_from_db()


def _target_for(row: DiscoveredTarget) -> tuple[MonitoringTarget, bool]:
    slug = slug_for(row.identity)
    existing = MonitoringTarget.objects.filter(slug=slug).first()
    if existing is not None:
        return existing, False
    target = MonitoringTarget(
        name=row.name[:200],
        slug=slug,
        kind=row.kind,
        endpoint=row.endpoint,
        labels=dict(row.labels),
        parent=_parent_of(row),
    )
    target.full_clean()
    target.save()
    return target, True


def _parent_of(row: DiscoveredTarget) -> MonitoringTarget | None:
    """The gateway a device reports through: the target its registration became, else a
    configured target whose slug is the gateway's id."""
    if not row.parent_ref:
        return None
    gateway = (
        DiscoveredTarget.objects.filter(identity=f"device:{row.parent_ref}", target__isnull=False)
        .select_related("target")
        .first()
    )
    if gateway is not None:
        return gateway.target
    return MonitoringTarget.objects.filter(slug=slugify(row.parent_ref)).first()


def _adopt_children(row: DiscoveredTarget, target: MonitoringTarget) -> None:
    """Devices approved before their gateway get it as their parent now."""
    if row.source != DiscoverySource.DEVICE:
        return
    device_id = row.identity.partition(":")[2]
    orphans = DiscoveredTarget.objects.filter(
        parent_ref=device_id, target__isnull=False, target__parent__isnull=True
    ).exclude(target=target)
    MonitoringTarget.objects.filter(pk__in=orphans.values("target_id")).update(parent=target, updated_at=timezone.now())


def _create_default_checks(row: DiscoveredTarget, target: MonitoringTarget) -> list:
    """A device: a heartbeat fed by whatever it sends (pushes, pings, registration). An
    HTTP service or exporter: an HTTP check of its endpoint. Anything else: a TCP check."""
    from healthchecks.choices import CheckKind
    from healthchecks.models import HealthCheck

    interval = target.check_interval
    if row.source == DiscoverySource.DEVICE:
        offline_after = settings.MONITORING_DEVICE_OFFLINE_AFTER
        specs = [
            (
                "heartbeat",
                CheckKind.HEARTBEAT,
                {},
                {"period": min(interval, offline_after), "grace": max(offline_after - interval, 0)},
            )
        ]
    elif target.endpoint.startswith(("http://", "https://")):
        config = {"url": target.endpoint}
        if row.source == DiscoverySource.NETWORK:
            config["expected_status"] = DISCOVERED_HTTP_EXPECTED_STATUS
        specs = [("http", CheckKind.HTTP, config, {})]
    else:
        specs = [("tcp", CheckKind.TCP, {}, {})]
    checks = []
    for suffix, kind, config, extra in specs:
        check = HealthCheck(
            name=f"{target.name} {suffix}"[:200],
            key=f"{target.slug}-{suffix}"[:100],
            kind=kind,
            target=target,
            config=config,
            interval=interval,
            timeout=target.timeout,
            **extra,
        )
        check.full_clean()
        check.save()
        checks.append(check)
    return checks
