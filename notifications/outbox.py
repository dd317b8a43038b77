"""The durable outbox: rows written in the transition's transaction (`enqueue`), claimed with
a lease (`claim`: FOR UPDATE SKIP LOCKED on PostgreSQL, the one write lock on SQLite), sent
through the senders with rate limits and grouping (`deliver_claimed`), retried with
backoff, and swept periodically (`sweep_outbox`), so that a lost Celery message, a worker
killed mid-send or a Redis restart loses nothing."""

import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from alerts.choices import AlertState
from alerts.models import Alert, AlertRule
from alerts.silencing import SilenceSpec, current_silences, facts_for
from monitoring.crypto import DecryptionError
from monitoring.models import GlobalSettings

from . import ratelimit
from .choices import NotificationEvent, NotificationStatus
from .models import Notification, NotificationChannel
from .secrets import channel_settings
from .senders import AlertInfo, ChannelInfo, Message, Sender, SendError, sender_for

log = logging.getLogger("notifications")

CLAIM_LIMIT = 500
LEASE_MARGIN_S = 30.0  # a lease outlives the send's own timeout by this much
BACKOFF_BASE_S = 30.0
BACKOFF_FACTOR = 3.0
BACKOFF_CAP_S = 3600.0
BACKOFF_JITTER = 0.25  # each delay is spread by +-25 %
RETRY_AFTER_DEFAULT_S = 60.0  # a 429 without Retry-After
SWEEP_BUDGET_S = 60.0  # a sweep stops starting new sends after this long
MAX_INLINE_WAIT_S = 5.0  # a sweep waits this long at most for a rate-limit token
# Events that hold back while an alert is silenced or suppressed; acknowledged/resolved
# are decided once, when they are queued (see services.notify_transition).
HELD_EVENTS = (NotificationEvent.FIRING, NotificationEvent.ESCALATION, NotificationEvent.REMINDER)
STEP_EVENTS = (NotificationEvent.ESCALATION, NotificationEvent.REMINDER)
OPEN = (NotificationStatus.PENDING, NotificationStatus.SENDING)

CHANNEL_FAILING_RULE = "notification-channel-failing"
CHANNEL_FAILING_METRIC = "notification_channel_failing"
NOTIFICATIONS_METRIC = "alert_notifications_total"
PENDING_METRIC = "notification_outbox_pending"


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return timezone.now()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


def backoff_delay(attempts: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before retry number `attempts` (1 after the first failure): 30 s, 90 s,
    270 s... times 3 each time, capped at an hour, spread by +-25 % so that rows which
    failed together do not retry together."""
    base = min(BACKOFF_CAP_S, BACKOFF_BASE_S * BACKOFF_FACTOR ** max(attempts - 1, 0))
    return base * (1 - BACKOFF_JITTER + 2 * BACKOFF_JITTER * rng())


# --- Writing rows ---------------------------------------------------------------------------------


def enqueue(
    *,
    alert: Alert,
    channels: Iterable[NotificationChannel],
    event: NotificationEvent | str,
    step: int = 0,
    now: datetime,
    hold: str = "",
    never_hold: Iterable[int] = (),
) -> list[Notification]:
    """Write the outbox rows of one alert event, one per enabled channel that does not
    ignore the event, inside the caller's transaction; pending ones are delivered after it
    commits. With `hold` (why the alert's notifications are held back) rows are written as
    suppressed with that reason, except for the channels (ids) of `never_hold`. A row whose
    (alert, channel, event, step) exists already is "already queued" and not written again."""
    exempt = set(never_hold)
    rows = []
    for channel in sorted({c.pk: c for c in channels}.values(), key=lambda c: c.pk):
        if not channel.enabled or _sender_from_config(channel).is_noop(str(event)):
            continue
        held = hold if hold and channel.pk not in exempt else ""
        rows.append(
            Notification(
                alert=alert,
                channel=channel,
                event=event,
                escalation_step=step,
                status=NotificationStatus.SUPPRESSED if held else NotificationStatus.PENDING,
                suppressed_reason=held[:200],
                idempotency_key=uuid.uuid4().hex,
                next_attempt_at=now,
                created_at=now,
            )
        )
    written = _insert(rows)
    pending = [row.pk for row in written if row.status == NotificationStatus.PENDING]
    if pending:
        dispatch_after_commit(pending)
    return written


def _insert(rows: list[Notification]) -> list[Notification]:
    if not rows:
        return []
    try:
        with transaction.atomic():
            return Notification.objects.bulk_create(rows)
    except IntegrityError:
        pass
    written = []
    for row in rows:
        try:
            with transaction.atomic():  # a savepoint: the caller's transaction goes on
                row.save(force_insert=True)
        except IntegrityError:
            log.info(
                "alert %s: %s (step %s) to %s already queued",
                row.alert_id,
                row.event,
                row.escalation_step,
                row.channel.key,
            )
            row.pk = None
            continue
        written.append(row)
    return written


def _sender_from_config(channel: NotificationChannel) -> Sender:
    # is_noop looks only at settings that are not secret: no decryption while queueing.
    return sender_for(ChannelInfo(channel.pk, channel.key, channel.name, channel.kind, channel.config or {}))


class _PerTransaction:
    """Something that lives exactly as long as the current transaction: registered as its
    on_commit callback, found again through the connection while the transaction's list of
    callbacks is the same list (a commit or rollback replaces it)."""

    owner: list | None = None

    def __call__(self) -> None:
        raise NotImplementedError


PerTransactionT = TypeVar("PerTransactionT", bound=_PerTransaction)


def per_transaction(kind: type[PerTransactionT], *, create: bool = True) -> PerTransactionT | None:
    """The `kind` object of the current transaction, made on first use (unless `create` is
    false); None outside a transaction."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        return None
    attribute = f"_notifications_{kind.__name__}"
    current = getattr(connection, attribute, None)
    if current is not None and current.owner is connection.run_on_commit:
        return current
    if not create:
        return None
    current = kind()
    # Django's robust on_commit logs a failed callback by its __qualname__, which an
    # instance lacks: without it the log call itself would raise into the commit.
    current.__qualname__ = kind.__qualname__
    transaction.on_commit(current, robust=True)
    current.owner = connection.run_on_commit
    setattr(connection, attribute, current)
    return current


class _DeliveryBatch(_PerTransaction):
    """Every row the transaction queued, handed to workers after it commits: a storm of
    transitions sends a few tasks, not one per row."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def __call__(self) -> None:
        dispatch_delivery(self.ids)


def dispatch_after_commit(ids: Sequence[int]) -> None:
    """Deliver `ids` once the current transaction commits (at once outside one)."""
    batch = per_transaction(_DeliveryBatch)
    if batch is None:
        dispatch_delivery(list(ids))
    else:
        batch.ids.extend(ids)


def dispatch_delivery(ids: Sequence[int], *, chunk: int = CLAIM_LIMIT) -> bool:
    """Queue delivery tasks for `ids` on the notifications queue. With the broker away this
    logs and returns False: the rows are stored, and the sweeper delivers them."""
    from kombu.exceptions import KombuError
    from redis import RedisError

    from .tasks import deliver_notifications_task

    try:
        for start in range(0, len(ids), chunk):
            deliver_notifications_task.apply_async(args=[list(ids[start : start + chunk])])
    except (KombuError, RedisError, OSError) as exc:
        log.warning("%d notification(s) not handed to a worker (%s); the outbox sweep sends them", len(ids), exc)
        return False
    return True


# --- Claiming ---------------------------------------------------------------------------------------


def _due(now: datetime) -> Q:
    return Q(status=NotificationStatus.PENDING, next_attempt_at__lte=now) | Q(
        status=NotificationStatus.SENDING, lease_expires_at__lte=now
    )


def claim(
    *, now: datetime, lease_s: float, limit: int = CLAIM_LIMIT, ids: Sequence[int] | None = None
) -> tuple[str, list[int]]:
    """Claim up to `limit` due rows (pending and due, or sending with an expired lease:
    a worker died mid-send) for `lease_s` seconds. Returns (claim token, ids). A row waits
    while an older row of the same alert and channel is unfinished, so a "resolved" never
    overtakes its "firing". Two sweepers never claim the same row: PostgreSQL skips rows
    another transaction has locked; SQLite runs one writing transaction at a time."""
    token = uuid.uuid4().hex
    earlier = Notification.objects.filter(
        alert=OuterRef("alert"), channel=OuterRef("channel"), pk__lt=OuterRef("pk"), status__in=OPEN
    )
    with transaction.atomic():
        due = Notification.objects.filter(_due(now)).filter(~Exists(earlier))
        if ids is not None:
            due = due.filter(pk__in=list(ids))
        picked = list(
            due.order_by("next_attempt_at", "pk")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        if picked:
            Notification.objects.filter(pk__in=picked).update(
                status=NotificationStatus.SENDING, claim_token=token, lease_expires_at=now + timedelta(seconds=lease_s)
            )
    return token, picked


# --- Delivering --------------------------------------------------------------------------------------


@dataclass
class DeliveryStats:
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    suppressed: int = 0
    deferred: int = 0  # waiting for a rate-limit token or a Retry-After
    messages: int = 0
    wait_s: float | None = None  # the shortest rate-limit wait seen

    def add(self, other: "DeliveryStats") -> None:
        for name in ("sent", "failed", "retrying", "suppressed", "deferred", "messages"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.wait_s is not None:
            self.wait_s = other.wait_s if self.wait_s is None else min(self.wait_s, other.wait_s)

    def line(self) -> str:
        return (
            f"{self.messages} message(s): {self.sent} sent, {self.retrying} to retry, {self.failed} failed, "
            f"{self.suppressed} held back, {self.deferred} deferred by rate limits"
        )


@dataclass(frozen=True)
class Site:
    timeout: float
    max_retries: int
    info: dict[str, str] = field(default_factory=dict)


def load_site() -> Site:
    stored = GlobalSettings.objects.filter(pk=1).first() or GlobalSettings()
    return Site(
        timeout=float(stored.notification_timeout or 30),
        max_retries=int(stored.max_retries),
        info={
            "organization": stored.organization,
            "project": stored.project,
            "environment": stored.environment,
            "public_url": settings.MONITORING_PUBLIC_URL.rstrip("/"),
        },
    )


def alert_urls(alert_id: int) -> tuple[str, str]:
    """The alert's dashboard page, and where on it to acknowledge, as absolute URLs. The
    link opens the page and its Acknowledge button (a POST): a GET from a link, or from a
    mail scanner following it, must not acknowledge anything."""
    base = settings.MONITORING_PUBLIC_URL.rstrip("/")
    try:
        page = reverse("dashboard-alert-detail", args=[alert_id])
    except NoReverseMatch:
        page = f"/alerts/{alert_id}/"
    return base + page, f"{base}{page}#acknowledge"


def alert_info(alert: Alert) -> AlertInfo:
    """An alert as the senders see it (select_related rule, target, acknowledged_by)."""
    rule = alert.rule
    url, ack_url = alert_urls(alert.pk)
    return AlertInfo(
        id=alert.pk,
        rule_name=rule.name,
        rule_key=rule.key,
        description=rule.description,
        metric=rule.metric,
        comparison=rule.comparison,
        threshold=rule.threshold,
        severity=alert.severity,
        state=alert.state,
        value=alert.value,
        labels=dict(alert.labels or {}),
        target=alert.target.slug if alert.target_id else (alert.labels or {}).get("target"),
        message=alert.message,
        fingerprint=alert.fingerprint,
        fired_at=alert.fired_at,
        resolved_at=alert.resolved_at,
        acknowledged_by=alert.acknowledged_by.get_username() if alert.acknowledged_by_id else "",
        url=url,
        ack_url=ack_url,
    )


def hold_reason(alert: Alert, now: datetime) -> str:
    """Why the alert's notifications are held back now ("" when they are not): a silence,
    a maintenance window, or a firing alert of a parent target."""
    if alert.suppressed_by_id:
        return f"suppressed: alert {alert.suppressed_by_id} of a parent target is firing"
    if not alert.silenced:
        return ""
    match = current_silences(now).silencing(facts_for(alert))
    if isinstance(match, SilenceSpec):
        return f"silenced by silence {match.id}"
    if match is not None:
        return f"silenced by maintenance window {match.name!r}"
    return "silenced"


@dataclass(frozen=True)
class _Claimed:
    """What planning needs of a claimed row; the rest is loaded for the rows sent now."""

    pk: int
    channel_id: int
    event: str
    alert_id: int | None
    held: bool  # its alert is silenced or suppressed


class _Delivery:
    """The delivery of one claim: rows are checked, grouped per channel, planned against the
    rate limits, sent, and their outcomes written, each write conditional on the claim."""

    def __init__(self, token: str, ids: Sequence[int], clock: Clock, site: Site, *, budget_s: float) -> None:
        self.token = token
        self.ids = list(ids)
        self.clock = clock
        self.site = site
        self.deadline = clock.now() + timedelta(seconds=budget_s)
        self.stats = DeliveryStats()

    def mine(self, ids: Iterable[int]) -> QuerySet:
        return Notification.objects.filter(pk__in=list(ids), claim_token=self.token, status=NotificationStatus.SENDING)

    def run(self) -> DeliveryStats:
        try:
            claimed = [
                _Claimed(pk, channel_id, event, alert_id, bool(silenced or suppressor))
                for pk, channel_id, event, alert_id, silenced, suppressor in self.mine(self.ids)
                .order_by("pk")
                .values_list("pk", "channel_id", "event", "alert_id", "alert__silenced", "alert__suppressed_by")
            ]
            channels = NotificationChannel.objects.in_bulk({row.channel_id for row in claimed})
            by_channel: dict[int, list[_Claimed]] = defaultdict(list)
            for row in self.hold_back(claimed, channels):
                by_channel[row.channel_id].append(row)
            for channel_id, rows in by_channel.items():
                self.deliver_channel(channels[channel_id], rows)
        finally:
            # Whatever was claimed and not decided (an exception, a time limit) goes back.
            self.release(self.ids, at=self.clock.now())
        return self.stats

    # --- Checks before sending -----------------------------------------------------------

    def hold_back(self, rows: list[_Claimed], channels: dict[int, NotificationChannel]) -> list[_Claimed]:
        """Rows of a disabled channel, and firing/escalation rows of an alert that is now
        silenced or suppressed, are held back (suppressed, with the reason)."""
        now = self.clock.now()
        held = [row for row in rows if row.held and row.event in HELD_EVENTS]
        alerts = Alert.objects.select_related("rule", "target").in_bulk({row.alert_id for row in held})
        keep = []
        for row in rows:
            if not channels[row.channel_id].enabled:
                self.suppress([row.pk], "the channel was disabled")
            elif row.held and row.event in HELD_EVENTS:
                self.suppress([row.pk], hold_reason(alerts[row.alert_id], now) or "held back")
            else:
                keep.append(row)
        return keep

    def still_due_steps(self, rows: list[Notification]) -> list[Notification]:
        """Escalation steps and reminders are checked again under the alert's row lock just
        before they go out: an acknowledgement or resolve that committed meanwhile stops them."""
        step_alerts = {row.alert_id for row in rows if row.event in STEP_EVENTS and row.alert_id}
        if not step_alerts:
            return rows
        with transaction.atomic():
            states = dict(
                Alert.objects.select_for_update().filter(pk__in=step_alerts).order_by("pk").values_list("pk", "state")
            )
        keep = []
        for row in rows:
            state = states.get(row.alert_id)
            if row.event in STEP_EVENTS and state != AlertState.ACTIVE:
                self.suppress([row.pk], f"the alert was {state} before this step was sent")
            else:
                keep.append(row)
        return keep

    # --- One channel ----------------------------------------------------------------------

    def deliver_channel(self, channel: NotificationChannel, rows: list[_Claimed]) -> None:
        now = self.clock.now()
        until = ratelimit.blocked_until(channel.pk, now.timestamp())
        if until is not None:
            self.defer([row.pk for row in rows], datetime.fromtimestamp(until, tz=now.tzinfo))
            return
        try:
            info = ChannelInfo(
                channel.pk, channel.key, channel.name, channel.kind, channel_settings(channel), channel.template
            )
        except (DecryptionError, ValueError) as exc:  # secrets that no longer decrypt: no retry helps
            self.fail(
                channel,
                self.load([row.pk for row in rows]),
                f"the channel's secrets cannot be read: {type(exc).__name__}",
                permanent=True,
            )
            return
        sender = sender_for(info)
        limit = ratelimit.limit_for(channel.kind, channel.rate_limit_per_minute)
        grant = ratelimit.take_tokens(channel.pk, limit, len(rows), now.timestamp())
        plan = ratelimit.plan_messages(
            [row.event for row in rows], grant.granted, can_group=sender.groups, max_group=sender.max_group
        )
        ratelimit.give_back(channel.pk, limit, grant.granted - len(plan.messages))
        if plan.held:
            wait = max(grant.wait_s, 0.001)
            self.stats.wait_s = wait if self.stats.wait_s is None else min(self.stats.wait_s, wait)
            self.defer([rows[i].pk for i in plan.held], now + timedelta(seconds=wait))
        for number, indexes in enumerate(plan.messages):
            later = plan.messages[number:]
            if self.clock.now() >= self.deadline:
                # Out of time: the rest goes back for the next sweep, not to a hard time limit.
                ratelimit.give_back(channel.pk, limit, len(later))
                self.release([rows[i].pk for message in later for i in message], at=self.clock.now())
                return
            message_rows = self.still_due_steps(self.load([rows[i].pk for i in indexes]))
            if not message_rows:
                continue
            paused = self.send(sender, info, channel, message_rows, held_count=len(plan.held))
            if paused is not None:
                # The channel answered 429 or failed transiently: its other messages wait too
                # (untried, so their retries are not used up) rather than hammer it now.
                ratelimit.give_back(channel.pk, limit, len(later) - 1)
                self.defer([rows[i].pk for message in later[1:] for i in message], paused)
                return

    def load(self, ids: Sequence[int]) -> list[Notification]:
        """The rows of one message, with what the message shows of their alerts."""
        return list(
            self.mine(ids)
            .select_related("channel", "alert__rule", "alert__target", "alert__acknowledged_by")
            .order_by("pk")
        )

    def waiting_after(self, channel_id: int, message_ids: Sequence[int]) -> int:
        """How many notifications of the channel still wait once this message is out."""
        return (
            Notification.objects.filter(channel_id=channel_id, status__in=OPEN)
            .exclude(pk__in=list(message_ids))
            .count()
        )

    def send(
        self,
        sender: Sender,
        info: ChannelInfo,
        channel: NotificationChannel,
        rows: list[Notification],
        *,
        held_count: int,
    ) -> datetime | None:
        """Send one message for `rows`; record the outcome. Returns, after a 429 or a
        transient failure, when the channel should be tried again; else None."""
        now = self.clock.now()
        timeout = sender.timeout(self.site.timeout)
        # Start the attempt: count it and extend the lease over this send, both only for
        # rows this claim still holds (a row whose lease ran out may be another's now).
        self.mine(self.ids).update(lease_expires_at=now + timedelta(seconds=timeout + LEASE_MARGIN_S))
        ids = [row.pk for row in rows]
        started = self.mine(ids).update(attempts=F("attempts") + 1)
        if started != len(ids):
            still = set(self.mine(ids).values_list("pk", flat=True))
            rows = [row for row in rows if row.pk in still]
            ids = [row.pk for row in rows]
            if not rows:
                return None
        for row in rows:
            row.attempts += 1
        grouped = len(rows) > 1
        more = self.waiting_after(info.id, ids) if grouped or held_count else 0
        message = Message(
            channel=info,
            event=rows[0].event,
            alerts=tuple(alert_info(row.alert) for row in rows) if rows[0].alert_id else (),
            idempotency_key=rows[0].idempotency_key if not grouped else _group_key(rows),
            now=now,
            timeout=timeout,
            step=rows[0].escalation_step,
            more=more,
            progress=(rows[0].payload or {}).get("progress", {}) if not grouped else {},
            site=self.site.info,
        )
        self.stats.messages += 1
        try:
            note = sender.send(message)
        except SendError as exc:
            return self.record_failure(channel, rows, exc)
        except SoftTimeLimitExceeded:
            raise  # the task's time is up: run() puts the undecided rows back
        except Exception as exc:
            # A bug (in a sender, a template) must not stall the outbox: recorded on the rows
            # and retried like any transient error, so it ends as failed, visibly.
            log.exception("sending %d notification(s) to %s raised", len(rows), info.key)
            return self.record_failure(channel, rows, SendError(f"internal error: {type(exc).__name__}: {exc}"))
        self.record_sent(channel, rows, note=note, grouped=grouped)
        return None

    # --- Outcomes ---------------------------------------------------------------------------

    def forget(self, ids: Iterable[int]) -> None:
        decided = set(ids)
        self.ids = [pk for pk in self.ids if pk not in decided]

    def record_sent(self, channel: NotificationChannel, rows: list[Notification], *, note: str, grouped: bool) -> None:
        now = self.clock.now()
        payload = {"group_size": len(rows)} if grouped else {}
        if note:
            payload["note"] = note
        done = self.mine([r.pk for r in rows]).update(
            status=NotificationStatus.SENT,
            sent_at=now,
            last_error="",
            lease_expires_at=None,
            claim_token="",
            payload=payload,
        )
        self.forget(r.pk for r in rows)
        self.stats.sent += done
        if channel.failing_since is not None:
            mark_channel_ok(channel, now=now)

    def record_failure(self, channel: NotificationChannel, rows: list[Notification], exc: SendError) -> datetime | None:
        now = self.clock.now()
        progress = {"progress": exc.progress} if exc.progress and len(rows) == 1 else {}
        if exc.permanent:
            self.fail(channel, rows, exc.message, permanent=True, extra=progress)
            return None
        blocked = None
        if exc.rate_limited:
            wait = exc.retry_after if exc.retry_after is not None else RETRY_AFTER_DEFAULT_S
            blocked = now + timedelta(seconds=wait)
            ratelimit.block_channel(channel.pk, blocked.timestamp(), now.timestamp())
        retry_times = []
        for row in rows:
            # A 429 says "later", not "broken": it never uses up the retries.
            if not exc.rate_limited and row.attempts > self.site.max_retries:
                self.fail(
                    channel,
                    [row],
                    f"gave up after {row.attempts} attempts: {exc.message}",
                    permanent=False,
                    extra=progress,
                )
                continue
            retry_at = blocked or now + timedelta(seconds=backoff_delay(row.attempts))
            retry_times.append(retry_at)
            self.mine([row.pk]).update(
                status=NotificationStatus.PENDING,
                next_attempt_at=retry_at,
                last_error=exc.message[:2000],
                lease_expires_at=None,
                claim_token="",
                payload={**(row.payload or {}), **progress},
            )
            self.stats.retrying += 1
        self.forget(r.pk for r in rows)
        return blocked or min(retry_times, default=now + timedelta(seconds=BACKOFF_BASE_S))

    def fail(
        self,
        channel: NotificationChannel,
        rows: list[Notification],
        error: str,
        *,
        permanent: bool,
        extra: dict | None = None,
    ) -> None:
        if not rows:
            return
        now = self.clock.now()
        for row in rows:
            self.mine([row.pk]).update(
                status=NotificationStatus.FAILED,
                permanent_failure=permanent,
                last_error=error[:2000],
                lease_expires_at=None,
                claim_token="",
                payload={**(row.payload or {}), **(extra or {})},
            )
        self.forget(r.pk for r in rows)
        self.stats.failed += len(rows)
        log.warning(
            "%d notification(s) to %s failed%s: %s",
            len(rows),
            channel.key,
            " for good" if permanent else " after every retry",
            error,
        )
        mark_channel_failing(channel, error=error, now=now, notification_ids=[r.pk for r in rows])

    def suppress(self, ids: Sequence[int], reason: str) -> None:
        done = self.mine(ids).update(
            status=NotificationStatus.SUPPRESSED, suppressed_reason=reason[:200], lease_expires_at=None, claim_token=""
        )
        self.forget(ids)
        self.stats.suppressed += done

    def defer(self, ids: Sequence[int], at: datetime) -> None:
        if ids:
            self.release(ids, at=at)
            self.stats.deferred += len(ids)

    def release(self, ids: Iterable[int], *, at: datetime) -> None:
        ids = list(ids)
        if not ids:
            return
        self.mine(ids).update(
            status=NotificationStatus.PENDING, next_attempt_at=at, lease_expires_at=None, claim_token=""
        )
        self.forget(ids)


def _group_key(rows: list[Notification]) -> str:
    import hashlib

    joined = ",".join(sorted(row.idempotency_key for row in rows))
    return "group-" + hashlib.sha256(joined.encode()).hexdigest()[:32]


def deliver_claimed(token: str, ids: Sequence[int], *, clock: Clock = SYSTEM_CLOCK) -> DeliveryStats:
    """Send the rows of one claim and record each outcome."""
    if not ids:
        return DeliveryStats()
    return _Delivery(token, ids, clock, load_site(), budget_s=SWEEP_BUDGET_S).run()


def deliver_notifications(ids: Sequence[int], *, clock: Clock = SYSTEM_CLOCK) -> DeliveryStats:
    """Deliver the given rows if they are (still) due: the task queued after a commit. A
    row already sent, or claimed by a sweep meanwhile, is left alone."""
    site = load_site()
    token, claimed = claim(now=clock.now(), lease_s=site.timeout + LEASE_MARGIN_S, ids=ids)
    if not claimed:
        return DeliveryStats()
    return _Delivery(token, claimed, clock, site, budget_s=SWEEP_BUDGET_S).run()


def sweep_outbox(
    *, clock: Clock = SYSTEM_CLOCK, budget_s: float = SWEEP_BUDGET_S, limit: int = CLAIM_LIMIT
) -> DeliveryStats:
    """Claim and deliver every due row, batch after batch, for at most `budget_s`; waits
    (up to MAX_INLINE_WAIT_S at a time) for rate-limit tokens within the budget, so a storm
    drains in one sweep at the channel's pace. Then pushes the outbox metrics."""
    started = clock.now()
    total = DeliveryStats()
    site = load_site()
    while (clock.now() - started).total_seconds() < budget_s:
        token, claimed = claim(now=clock.now(), lease_s=site.timeout + LEASE_MARGIN_S, limit=limit)
        if claimed:
            left = budget_s - (clock.now() - started).total_seconds()
            stats = _Delivery(token, claimed, clock, site, budget_s=left).run()
            total.add(stats)
            if stats.sent or stats.failed or stats.retrying or stats.suppressed:
                continue
        wait = _next_due_in(clock.now())
        elapsed = (clock.now() - started).total_seconds()
        if wait is None or wait > MAX_INLINE_WAIT_S or elapsed + wait >= budget_s:
            break
        clock.sleep(wait)
    push_notification_metrics(now=clock.now())
    return total


def _next_due_in(now: datetime) -> float | None:
    """Seconds until the next pending row falls due, if it is in the future."""
    soonest = (
        Notification.objects.filter(status=NotificationStatus.PENDING, next_attempt_at__gt=now)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    return (soonest - now).total_seconds() if soonest is not None else None


# --- Held notifications ------------------------------------------------------------------------------


def release_held(*, now: datetime) -> list[int]:
    """Queue again the held-back firing notifications of alerts that still fire and are no
    longer silenced or suppressed: a silence or maintenance window ended, or the parent
    target recovered. Acknowledged alerts stay quiet (someone is on them)."""
    held = Notification.objects.filter(
        status=NotificationStatus.SUPPRESSED,
        event=NotificationEvent.FIRING,
        channel__enabled=True,
        alert__state=AlertState.ACTIVE,
        alert__silenced=False,
        alert__suppressed_by__isnull=True,
    )
    ids = list(held.values_list("pk", flat=True))
    if not ids:
        return []
    with transaction.atomic():
        released = list(held.filter(pk__in=ids).select_for_update(of=("self",)).values_list("pk", flat=True))
        Notification.objects.filter(pk__in=released).update(
            status=NotificationStatus.PENDING, next_attempt_at=now, suppressed_reason=""
        )
        dispatch_after_commit(released)
    log.info("%d held-back notification(s) released", len(released))
    return released


# --- Channel health and metrics --------------------------------------------------------------------


def ensure_channel_failing_rule() -> AlertRule:
    """The internal rule "a notification channel is failing", on the gauge this module
    pushes; created the first time a channel fails, then an ordinary rule (its severity,
    channels and enabled flag can be changed in the admin)."""
    rule, _ = AlertRule.objects.get_or_create(
        key=CHANNEL_FAILING_RULE,
        defaults={
            "name": "Notification channel failing",
            "description": "Internal: a notification channel failed for good or after every retry. "
            "Notified to the other channels (to all others while this rule names none).",
            "metric": CHANNEL_FAILING_METRIC,
            "comparison": ">",
            "threshold": 0,
            "duration": 0,
            "severity": "high",
        },
    )
    return rule


def mark_channel_failing(
    channel: NotificationChannel, *, error: str, now: datetime, notification_ids: Sequence[int] = ()
) -> None:
    """Remember that the channel fails, push its gauge (the internal rule fires on it) and
    tell the dashboard."""
    from dashboard.publish import GROUP_ALERTS, publish

    NotificationChannel.objects.filter(pk=channel.pk, failing_since__isnull=True).update(failing_since=now)
    NotificationChannel.objects.filter(pk=channel.pk).update(last_error=error[:2000])
    channel.failing_since = channel.failing_since or now
    channel.last_error = error
    ensure_channel_failing_rule()
    _push_failing_gauge(channel.key, 1.0, now)
    publish(
        GROUP_ALERTS,
        "notification.failed",
        {"channel": channel.key, "error": error[:500], "notifications": list(notification_ids)},
    )


def mark_channel_ok(channel: NotificationChannel, *, now: datetime) -> None:
    NotificationChannel.objects.filter(pk=channel.pk).update(failing_since=None, last_error="")
    channel.failing_since = None
    _push_failing_gauge(channel.key, 0.0, now)


def _push_failing_gauge(key: str, value: float, now: datetime) -> None:
    from monitoring.ingest import SampleIn, ingest_samples

    ingest_samples([SampleIn(CHANNEL_FAILING_METRIC, {"channel": key}, value, now.timestamp())], now=now)


def push_notification_metrics(*, now: datetime) -> None:
    """Store `alert_notifications_total{channel,status}` (finished notifications, counted from
    the outbox so every process agrees), `notification_outbox_pending` (pending and sending)
    and `notification_channel_failing{channel}` through the ingestion path."""
    from monitoring.ingest import SampleIn, ingest_samples

    stamp = now.timestamp()
    finished = (NotificationStatus.SENT, NotificationStatus.FAILED, NotificationStatus.SUPPRESSED)
    counts = {
        (key, status): n
        for key, status, n in Notification.objects.filter(status__in=finished)
        .values_list("channel__key", "status")
        .annotate(n=Count("pk"))
        .values_list("channel__key", "status", "n")
    }
    channels = list(NotificationChannel.objects.values_list("key", "failing_since"))
    samples = [
        SampleIn(
            NOTIFICATIONS_METRIC, {"channel": key, "status": str(status)}, float(counts.get((key, status), 0)), stamp
        )
        for key, _ in channels
        for status in finished
    ]
    pending = Notification.objects.filter(status__in=OPEN).count()
    samples.append(SampleIn(PENDING_METRIC, {}, float(pending), stamp))
    samples += [
        SampleIn(CHANNEL_FAILING_METRIC, {"channel": key}, 1.0 if failing else 0.0, stamp) for key, failing in channels
    ]
    ingest_samples(samples, now=now)
