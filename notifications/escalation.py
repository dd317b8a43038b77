"""Escalation: the policy that applies to an alert, the snapshot of it copied onto the alert
when it fires, when each step falls due (pure), and the sweep that sends the due steps.
Due steps live in the database (`Alert.next_escalation_at`), never in Celery countdowns."""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from alerts.choices import AlertState
from alerts.models import Alert, AlertRule, EscalationPolicy

from .choices import NotificationEvent, NotificationStatus
from .models import Notification, NotificationChannel

log = logging.getLogger("notifications")

# A repeating policy never starts over sooner than this after its last step, so a policy
# whose only step is at 0 minutes does not notify every sweep.
REPEAT_MIN_MINUTES = 5
SWEEP_LIMIT = 500


@dataclass(frozen=True)
class StepSpec:
    after_minutes: int
    channels: tuple[int, ...]  # channel ids


@dataclass(frozen=True)
class PolicySpec:
    """A policy as copied onto an alert. Steps are numbered by position in the sequence the
    alert goes through: 0, 1, ... len(steps)-1, and with `repeat` on from there again."""

    key: str
    name: str
    repeat: bool
    steps: tuple[StepSpec, ...]

    @property
    def period_minutes(self) -> int:
        """How long one round of a repeating policy lasts: from its first step to its last,
        plus the gap before the first step comes again, which is the last gap between steps
        (or, for a single step, its own delay), at least REPEAT_MIN_MINUTES. Steps at 0 and
        15 minutes repeat at 30 and 45; a single step at 10 repeats every 10 minutes."""
        first, last = self.steps[0].after_minutes, self.steps[-1].after_minutes
        gap = last - self.steps[-2].after_minutes if len(self.steps) > 1 else first
        return last - first + max(gap, REPEAT_MIN_MINUTES)

    def due_offset(self, position: int) -> timedelta | None:
        """How long after the alert fired the step at `position` is due; None past the last
        step of a policy that does not repeat."""
        if not self.steps:
            return None
        round_, index = divmod(position, len(self.steps))
        if round_ and not self.repeat:
            return None
        return timedelta(minutes=round_ * self.period_minutes + self.steps[index].after_minutes)

    def step_at(self, position: int) -> StepSpec:
        return self.steps[position % len(self.steps)]

    def event_at(self, position: int) -> NotificationEvent:
        """The first round escalates; the rounds of `repeat` remind."""
        return NotificationEvent.ESCALATION if position < len(self.steps) else NotificationEvent.REMINDER

    def immediate_steps(self) -> int:
        """How many leading steps are due the moment the alert fires: they go out with the
        firing notification itself, as one message per channel."""
        count = 0
        for step in self.steps:
            if step.after_minutes > 0:
                break
            count += 1
        return count


def snapshot_of(policy: EscalationPolicy) -> dict[str, Any]:
    """The policy as JSON, to be kept on the alert: later edits of the policy do not change
    a running incident."""
    return {
        "policy": policy.key,
        "name": policy.name,
        "repeat": policy.repeat,
        "steps": [
            {"after_minutes": step.after_minutes, "channels": sorted(c.pk for c in step.channels.all())}
            for step in policy.steps.order_by("order", "pk").prefetch_related("channels")
        ],
    }


def spec_from_snapshot(snapshot: Mapping[str, Any] | None) -> PolicySpec | None:
    if not snapshot or not snapshot.get("steps"):
        return None
    steps = tuple(
        StepSpec(int(step.get("after_minutes") or 0), tuple(int(c) for c in step.get("channels", ())))
        for step in snapshot["steps"]
    )
    return PolicySpec(
        key=str(snapshot.get("policy", "")),
        name=str(snapshot.get("name", "")),
        repeat=bool(snapshot.get("repeat")),
        steps=tuple(sorted(steps, key=lambda s: s.after_minutes)),
    )


def policy_for(*, rule_id: int, severity: str) -> EscalationPolicy | None:
    """The rule's own policy when it names an enabled one, else the first (oldest) enabled
    policy for the alert's severity."""
    own = Exists(AlertRule.objects.filter(pk=rule_id, escalation_policy=OuterRef("pk")))
    return (
        EscalationPolicy.objects.annotate(own=own)
        .filter(Q(own=True) | Q(severity=severity), enabled=True)
        .order_by("-own", "pk")
        .first()
    )


def policy_snapshot(*, rule_id: int, severity: str) -> dict[str, Any] | None:
    policy = policy_for(rule_id=rule_id, severity=severity)
    return snapshot_of(policy) if policy is not None else None


def start_escalation(alert: Alert, *, snapshot: dict[str, Any] | None, fired_at: datetime) -> set[int]:
    """Copy the policy (`snapshot`) onto the alert as it fires and schedule its first
    delayed step. Returns the channel ids of the steps due at once (sent with the firing
    notification). Called inside the transaction that records the firing."""
    spec = spec_from_snapshot(snapshot)
    immediate: set[int] = set()
    position = 0
    if spec is not None:
        position = spec.immediate_steps()
        for step in spec.steps[:position]:
            immediate.update(step.channels)
    offset = spec.due_offset(position) if spec is not None else None
    next_at = fired_at + offset if offset is not None else None
    if (snapshot, position, next_at) != (alert.escalation_snapshot, alert.escalation_step, alert.next_escalation_at):
        _write_escalation(alert, snapshot, position, next_at)
    return immediate


def stop_escalation(alert: Alert, *, reason: str) -> int:
    """Acknowledged or resolved: no further steps, and the steps queued but not yet sent are
    held back. A step being sent right now is checked again under the alert's lock just
    before it goes out (see outbox). Returns how many queued steps were held back."""
    if alert.next_escalation_at is not None:
        _write_escalation(alert, alert.escalation_snapshot, alert.escalation_step, None)
    return Notification.objects.filter(
        alert=alert,
        event__in=(NotificationEvent.ESCALATION, NotificationEvent.REMINDER),
        status=NotificationStatus.PENDING,
    ).update(status=NotificationStatus.SUPPRESSED, suppressed_reason=reason[:200])


def resume_escalation(alert: Alert, *, now: datetime) -> None:
    """An acknowledgement expired while the alert still fires: the next step is due at its
    time, or now when that has passed."""
    spec = spec_from_snapshot(alert.escalation_snapshot)
    if spec is None:
        return
    offset = spec.due_offset(alert.escalation_step)
    fired_at = alert.fired_at or now
    _write_escalation(
        alert, alert.escalation_snapshot, alert.escalation_step, fired_at + offset if offset is not None else None
    )


def _write_escalation(alert: Alert, snapshot: Any, position: int, next_at: datetime | None) -> None:
    # Only these columns: the transition's own writes of the row are not repeated.
    Alert.objects.filter(pk=alert.pk).update(
        escalation_snapshot=snapshot, escalation_step=position, next_escalation_at=next_at
    )
    alert.escalation_snapshot, alert.escalation_step, alert.next_escalation_at = snapshot, position, next_at


@dataclass(frozen=True)
class EscalationSweep:
    steps_sent: int = 0
    notifications: int = 0
    released: int = 0

    def line(self) -> str:
        return (
            f"{self.steps_sent} escalation step(s) due, {self.notifications} notification(s) queued, "
            f"{self.released} held notification(s) released"
        )


def escalate_due(*, now: datetime, limit: int = SWEEP_LIMIT) -> tuple[int, list[int]]:
    """Queue the notifications of every escalation step due at `now`, one step per alert per
    sweep. Each alert is re-read under its row lock: an acknowledgement or resolve that
    committed first leaves nothing to send, and one that comes after finds the step's rows
    and holds them back. Silenced and suppressed alerts wait (their step goes out when they
    are released). Returns (steps taken, notification ids queued)."""
    from .outbox import enqueue

    due = list(
        Alert.objects.filter(
            state=AlertState.ACTIVE,
            next_escalation_at__lte=now,
            silenced=False,
            suppressed_by__isnull=True,
        )
        .order_by("next_escalation_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    steps = 0
    queued: list[int] = []
    for alert_id in due:
        with transaction.atomic():
            alert = (
                Alert.objects.select_for_update(skip_locked=True)
                .filter(pk=alert_id, state=AlertState.ACTIVE, next_escalation_at__lte=now)
                .first()
            )
            if alert is None:
                continue  # acknowledged, resolved or taken by another sweep meanwhile
            spec = spec_from_snapshot(alert.escalation_snapshot)
            position = alert.escalation_step
            if spec is None or spec.due_offset(position) is None:
                _write_escalation(alert, alert.escalation_snapshot, position, None)
                continue
            step = spec.step_at(position)
            channels = NotificationChannel.objects.filter(pk__in=step.channels, enabled=True)
            rows = enqueue(alert=alert, channels=channels, event=spec.event_at(position), step=position + 1, now=now)
            queued += [row.pk for row in rows if row.status == NotificationStatus.PENDING]
            offset = spec.due_offset(position + 1)
            fired_at = alert.fired_at or now
            _write_escalation(
                alert, alert.escalation_snapshot, position + 1, fired_at + offset if offset is not None else None
            )
            steps += 1
            log.info(
                "alert %s: escalation step %s of policy %s queued to %d channel(s)",
                alert.pk,
                position + 1,
                spec.key,
                len(rows),
            )
    return steps, queued
