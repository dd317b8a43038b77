"""The notification services: what an alert transition queues (with escalation), the
periodic sweeps, and test messages sent on request through each channel."""

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TypeVar

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q, QuerySet

from alerts.choices import AlertState
from alerts.models import Alert, AlertEvent, AlertRule
from monitoring.audit import record_audit
from monitoring.choices import AuditAction, AuditSource
from monitoring.crypto import DecryptionError

from . import escalation, outbox
from .choices import NotificationEvent, NotificationStatus
from .models import Notification, NotificationChannel
from .secrets import channel_settings
from .senders import AlertInfo, ChannelInfo, Message, SendError, sender_for

log = logging.getLogger("notifications")
T = TypeVar("T")

# A test message is sent while a person waits for the answer.
TEST_TIMEOUT_CAP_S = 20.0
NOTIFIED_EVENTS = (NotificationEvent.FIRING, NotificationEvent.ESCALATION, NotificationEvent.REMINDER)


# --- Transitions --------------------------------------------------------------------------------


def notify_transition(*, alert: Alert, event: AlertEvent) -> list[Notification]:
    """Queue the notifications of one alert transition, in its transaction (called by
    alerts.history.after_transition). Which channels:
    - fired (pending or new -> active): the rule's channels and those of the escalation
      steps due at once; the policy is copied onto the alert and its first delayed step
      scheduled;
    - acknowledged / resolved: the rule's channels and every channel told that it fired;
      further escalation stops at once;
    - an acknowledgement expired (acknowledged -> active): escalation resumes, no message.
    Held back (suppressed, with the reason) while the alert is silenced or suppressed by a
    parent, except that a channel told the alert fired is always told it was acknowledged
    or resolved (a PagerDuty incident, a Slack thread must not stay open)."""
    to_state, from_state, now = event.to_state, event.from_state, event.at
    if to_state == AlertState.ACTIVE and from_state in ("", AlertState.PENDING):
        snapshot = _looked_up(
            ("policy", alert.rule_id, alert.severity),
            lambda: escalation.policy_snapshot(rule_id=alert.rule_id, severity=alert.severity),
        )
        immediate = escalation.start_escalation(alert, snapshot=snapshot, fired_at=alert.fired_at or now)
        channels = rule_channels(alert) + channels_by_id(immediate)
        return outbox.enqueue(
            alert=alert, channels=channels, event=NotificationEvent.FIRING, now=now, hold=outbox.hold_reason(alert, now)
        )
    if to_state == AlertState.ACTIVE and from_state == AlertState.ACKNOWLEDGED:
        escalation.resume_escalation(alert, now=now)
        return []
    if to_state in (AlertState.ACKNOWLEDGED, AlertState.RESOLVED):
        kind = NotificationEvent.ACKNOWLEDGED if to_state == AlertState.ACKNOWLEDGED else NotificationEvent.RESOLVED
        escalation.stop_escalation(alert, reason=f"the alert was {to_state} before this step was sent")
        told = notified_channel_ids(alert)
        return outbox.enqueue(
            alert=alert,
            channels=rule_channels(alert) + channels_by_id(told),
            event=kind,
            # An alert can be acknowledged again after an acknowledgement expired and a
            # later step went out: the step number keeps those apart.
            step=alert.escalation_step if kind == NotificationEvent.ACKNOWLEDGED else 0,
            now=now,
            hold=outbox.hold_reason(alert, now),
            never_hold=told,
        )
    return []


def rule_channels(alert: Alert) -> list[NotificationChannel]:
    """The enabled channels of the alert's rule. The internal "channel failing" rule goes
    to its own channels, or to every channel while it names none, but never to the failing
    channel itself."""
    channels = _looked_up(
        ("rule_channels", alert.rule_id),
        lambda: list(NotificationChannel.objects.filter(rules=alert.rule_id, enabled=True)),
    )
    failing = (alert.labels or {}).get("channel")
    if failing and AlertRule.objects.filter(pk=alert.rule_id, key=outbox.CHANNEL_FAILING_RULE).exists():
        if not channels:
            channels = list(NotificationChannel.objects.filter(enabled=True))
        channels = [c for c in channels if c.key != failing]
    elif not channels and _looked_up(("watchdog_rule", alert.rule_id), lambda: _is_watchdog_rule(alert.rule_id)):
        # The pipeline watchdog's built-in rules, while they name no channel: every enabled
        # channel still working (not failing), or every enabled one if none is.
        enabled = _looked_up(("enabled_channels",), lambda: list(NotificationChannel.objects.filter(enabled=True)))
        channels = [c for c in enabled if c.failing_since is None] or enabled
    return channels


def _is_watchdog_rule(rule_id: int) -> bool:
    from monitoring.watchdog import RULE_PREFIX

    return AlertRule.objects.filter(pk=rule_id, key__startswith=RULE_PREFIX).exists()


def channels_by_id(ids: set[int]) -> list[NotificationChannel]:
    if not ids:
        return []
    return _looked_up(
        ("channels", frozenset(ids)), lambda: list(NotificationChannel.objects.filter(pk__in=ids, enabled=True))
    )


class _Lookups(outbox._PerTransaction):
    """Reads that a storm of transitions in one transaction (a thousand alerts firing in one
    evaluation) would otherwise repeat for every alert: a rule's channels, the policy for a
    rule and severity. They live as long as the transaction, and any change to the models
    they read clears them (see apps.py)."""

    def __init__(self) -> None:
        self.values: dict = {}

    def __call__(self) -> None:
        self.values.clear()


def _looked_up(key: tuple, read: Callable[[], T]) -> T:
    lookups = outbox.per_transaction(_Lookups)
    if lookups is None:
        return read()
    if key not in lookups.values:
        lookups.values[key] = read()
    return lookups.values[key]


def forget_lookups(**_: object) -> None:
    """Signal receiver: channels, rules or policies changed in this transaction."""
    lookups = outbox.per_transaction(_Lookups, create=False)
    if lookups is not None:
        lookups.values.clear()


def notified_channel_ids(alert: Alert) -> set[int]:
    """Channels that were told (or are about to be told) that the alert fires."""
    return set(
        Notification.objects.filter(alert=alert, event__in=NOTIFIED_EVENTS)
        .exclude(status=NotificationStatus.SUPPRESSED)
        .values_list("channel_id", flat=True)
    )


# --- Sweeps ------------------------------------------------------------------------------------------


def sweep_escalations(*, now: datetime) -> escalation.EscalationSweep:
    """The periodic pass over alerts: acknowledgements that expired, silences, maintenance
    windows and parent suppressions that began or ended (their flags follow the clock),
    held notifications of alerts released since, then the escalation steps now due."""
    from alerts.lifecycle import expire_acknowledgements
    from alerts.silencing import apply_dependency_suppression, refresh_silenced

    expire_acknowledgements(now)
    with transaction.atomic():
        refresh_silenced(now)
        apply_dependency_suppression(now)
    released = outbox.release_held(now=now)
    steps, queued = escalation.escalate_due(now=now)
    return escalation.EscalationSweep(steps_sent=steps, notifications=len(queued), released=len(released))


# --- Test messages -------------------------------------------------------------------------------------


class UnknownChannelError(ValueError):
    """A name that is neither a channel's key nor a channel kind."""


@dataclass(frozen=True)
class TestOutcome:
    channel: str
    kind: str
    enabled: bool
    status: str
    error: str
    notification_id: int
    duration_ms: int

    def as_dict(self) -> dict:
        return asdict(self)


def channels_named(names: Sequence[str]) -> list[NotificationChannel]:
    """The channels `names` refer to, by key, else by kind (every channel of it); no names:
    every enabled channel. Raises UnknownChannelError naming the known keys."""
    if not names:
        return list(NotificationChannel.objects.filter(enabled=True).order_by("key"))
    found: dict[int, NotificationChannel] = {}
    unknown = []
    for name in names:
        matches = list(NotificationChannel.objects.filter(key=name))
        if not matches:
            matches = list(NotificationChannel.objects.filter(kind=name).order_by("key"))
        if not matches:
            unknown.append(name)
        for channel in matches:
            found.setdefault(channel.pk, channel)
    if unknown:
        known = ", ".join(NotificationChannel.objects.order_by("key").values_list("key", flat=True)) or "none"
        raise UnknownChannelError(f"Unknown channel {', '.join(map(repr, unknown))}; the channels are: {known}.")
    return list(found.values())


def send_test_notifications(
    *,
    channels: Sequence[NotificationChannel],
    user: User | None,
    source: AuditSource | str,
    now: datetime,
    api_key_name: str = "",
    ip: str | None = None,
) -> list[TestOutcome]:
    """Send a test message through each channel now, bypassing the rate limits, and return
    each outcome. Each is kept in the history (event `test`) and audited."""
    site = outbox.load_site()
    outcomes = []
    for channel in channels:
        row = Notification.objects.create(
            alert=None,
            channel=channel,
            event=NotificationEvent.TEST,
            status=NotificationStatus.SENDING,
            attempts=1,
            idempotency_key=uuid.uuid4().hex,
            next_attempt_at=now,
            created_at=now,
        )
        started = time.perf_counter()
        status, error = NotificationStatus.SENT, ""
        try:
            info = ChannelInfo(
                channel.pk, channel.key, channel.name, channel.kind, channel_settings(channel), channel.template
            )
            sender = sender_for(info)
            message = Message(
                channel=info,
                event=NotificationEvent.TEST,
                alerts=(TEST_ALERT,),
                idempotency_key=row.idempotency_key,
                now=now,
                timeout=min(sender.timeout(site.timeout), TEST_TIMEOUT_CAP_S),
                site=site.info,
            )
            sender.send(message)
        except SendError as exc:
            status, error = NotificationStatus.FAILED, exc.message
        except DecryptionError as exc:
            status, error = NotificationStatus.FAILED, f"the channel's secrets cannot be read: {type(exc).__name__}"
        except Exception as exc:
            # A diagnostic tool reports a sender's bug as the outcome instead of a 500.
            log.exception("test message to %s raised", channel.key)
            status, error = NotificationStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}"
        duration_ms = int((time.perf_counter() - started) * 1000)
        Notification.objects.filter(pk=row.pk).update(
            status=status,
            last_error=error[:2000],
            permanent_failure=False,
            sent_at=now if status == NotificationStatus.SENT else None,
        )
        outcome = TestOutcome(channel.key, channel.kind, channel.enabled, str(status), error, row.pk, duration_ms)
        record_audit(
            actor=user,
            source=source,
            action=AuditAction.TEST,
            obj=channel,
            after={"status": outcome.status, "error": error, "notification": row.pk},
            api_key_name=api_key_name,
            ip=ip,
            at=now,
        )
        outcomes.append(outcome)
    return outcomes


TEST_ALERT = AlertInfo(
    id=None,
    rule_name="Test notification",
    rule_key="monitoring_test",
    description="A test message sent on request; nothing is wrong.",
    severity="low",
    state="active",
    labels={"alertname": "MonitoringTest"},
    message="This is a test notification; nothing is wrong.",
)


def notification_history(
    *,
    since: datetime | None = None,
    channel: str | None = None,
    statuses: Sequence[str] = (),
    alert_id: int | None = None,
) -> QuerySet:
    """The outbox rows for the history views, newest first, with what they show."""
    rows = Notification.objects.select_related("channel", "alert__rule")
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if channel:
        by_channel = Q(channel__key=channel)
        if channel.isascii() and channel.isdigit() and len(channel) < 19:  # an id, not a key
            by_channel |= Q(channel_id=int(channel))
        rows = rows.filter(by_channel)
    if statuses:
        rows = rows.filter(status__in=list(statuses))
    if alert_id is not None:
        rows = rows.filter(alert_id=alert_id)
    return rows.order_by("-created_at", "-id")
