"""The pipeline watchdog: how far behind beat, rule evaluation, the Celery queues, the
notification outbox, ingestion and live updates are; exported on /metrics, stored through
the ingestion path, judged by the built-in `watchdog-*` rules, and, after a healthy round,
reported to the dead-man URL. A thread in every worker runs the round when beat does not."""

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import redis
from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .redis import redis_client

log = logging.getLogger("watchdog")

WATCHDOG_JOB = "monitoring: watchdog"
INTERVAL_FIELD = "sweep_interval"  # the GlobalSettings interval the watchdog job runs on

BEAT_TICK_METRIC = "monitoring_beat_last_tick_timestamp_seconds"
BEAT_AGE_METRIC = "monitoring_beat_last_tick_age_seconds"
BEAT_INTERVAL_METRIC = "monitoring_beat_interval_seconds"
EVALUATION_LAG_METRIC = "monitoring_evaluation_lag_seconds"
EVALUATION_INTERVAL_METRIC = "monitoring_evaluation_interval_seconds"
QUEUE_LENGTH_METRIC = "monitoring_celery_queue_length"
OUTBOX_PENDING_METRIC = "monitoring_outbox_pending"
OUTBOX_OLDEST_METRIC = "monitoring_outbox_oldest_pending_age_seconds"
INGESTION_RATE_METRIC = "monitoring_ingestion_samples_per_second"
PUBLISH_FAILURES_METRIC = "monitoring_channel_publish_failures"  # exposed with _total

# Shared counters in Redis. Ingestion adds each batch to a 10-second bucket; the rate is
# the sum of the last six complete buckets over 60 s.
INGEST_BUCKET_KEY = "mon:watchdog:ingested:{bucket}"
INGEST_BUCKET_S = 10
INGEST_WINDOW_BUCKETS = 6
PUBLISH_FAILURES_KEY = "mon:watchdog:publish-failures"
LAST_ROUND_KEY = "mon:watchdog:last-round"
# Each process sends its ingestion count at most this often, and after a Redis error waits
# this long before trying again: a push must not pay a failed connection while Redis is away.
COUNTER_FLUSH_S = 1.0
COUNTER_PAUSE_S = 5.0

# --- Built-in rules ----------------------------------------------------------------------------

RULE_PREFIX = "watchdog-"
OUTBOX_MAX_AGE_S = 300
OUTBOX_MAX_PENDING = 1000
BUILTIN_RULES: tuple[dict, ...] = (
    {
        "key": "watchdog-beat-stopped",
        "name": "watchdog: beat stopped",
        "metric": BEAT_AGE_METRIC,
        "expr": f"{BEAT_AGE_METRIC} > 3 * {BEAT_INTERVAL_METRIC}",
        "severity": "critical",
        "description": "Built-in: Celery beat has not run the watchdog job for three of its intervals, so no "
        "periodic work (evaluation, sweeps, checks, collection) runs. Raised by the workers' own watchdog "
        "thread, since beat is what stopped.",
    },
    {
        "key": "watchdog-evaluation-behind",
        "name": "watchdog: rule evaluation behind",
        "metric": EVALUATION_LAG_METRIC,
        "expr": f"{EVALUATION_LAG_METRIC} > 3 * {EVALUATION_INTERVAL_METRIC}",
        "severity": "high",
        "description": "Built-in: a group of rules (those sharing an evaluation interval) has a rule not "
        "evaluated for three of the group's intervals.",
    },
    {
        "key": "watchdog-outbox-backed-up",
        "name": "watchdog: notification outbox backed up",
        "metric": OUTBOX_OLDEST_METRIC,
        "comparison": ">",
        "threshold": OUTBOX_MAX_AGE_S,
        "severity": "high",
        "description": f"Built-in: a due notification has waited over {OUTBOX_MAX_AGE_S} s to be sent: the "
        "outbox sweep or the delivery workers are not keeping up, or not running.",
    },
    {
        "key": "watchdog-outbox-backlog",
        "name": "watchdog: notification outbox backlog",
        "metric": OUTBOX_PENDING_METRIC,
        "comparison": ">",
        "threshold": OUTBOX_MAX_PENDING,
        "duration": 300,
        "severity": "medium",
        "description": f"Built-in: over {OUTBOX_MAX_PENDING} notifications pending or sending for 5 minutes.",
    },
)


def ensure_watchdog_rules() -> list:
    """The built-in rules, created when missing (idempotent; one query once they exist). They
    are ordinary rules afterwards: thresholds, severity, channels and the enabled flag are
    edited in the admin and kept. A deleted one comes back at the next round: disable it."""
    from alerts.models import AlertRule

    keys = [spec["key"] for spec in BUILTIN_RULES]
    found = {rule.key: rule for rule in AlertRule.objects.filter(key__in=keys)}
    for spec in BUILTIN_RULES:
        if spec["key"] not in found:
            defaults = {"comparison": ">", "threshold": 0, "duration": 0, **spec}
            defaults.pop("key")
            found[spec["key"]], _ = AlertRule.objects.get_or_create(key=spec["key"], defaults=defaults)
    return [found[key] for key in keys]


# --- Counters kept by other paths -------------------------------------------------------------

_counter_lock = threading.Lock()
_counter_paused_until = 0.0
_counter_sent_at = float("-inf")
_unsent_ingested = 0
_publish_failures_lock = threading.Lock()
_unflushed_publish_failures = 0


def count_ingested(accepted: int) -> None:
    """Add a stored batch to the shared ingestion counter. Counted in this process and sent
    to Redis (one pipelined INCRBY + EXPIRE) at most once every COUNTER_FLUSH_S: a round trip
    per batch would cost a device's 10-sample push about a tenth of its time. Never raises;
    while Redis is away the count waits here."""
    global _counter_paused_until, _unsent_ingested, _counter_sent_at
    if accepted <= 0:
        return
    now = time.monotonic()
    with _counter_lock:
        _unsent_ingested += accepted
        if now - _counter_sent_at < COUNTER_FLUSH_S or now < _counter_paused_until:
            return
        count, _unsent_ingested, _counter_sent_at = _unsent_ingested, 0, now
    key = INGEST_BUCKET_KEY.format(bucket=int(time.time()) // INGEST_BUCKET_S)
    try:
        pipeline = redis_client().pipeline(transaction=False)
        pipeline.incrby(key, count)
        pipeline.expire(key, INGEST_BUCKET_S * (INGEST_WINDOW_BUCKETS + 2))
        pipeline.execute()
    except (redis.RedisError, OSError) as exc:
        with _counter_lock:
            _unsent_ingested += count
            _counter_paused_until = time.monotonic() + COUNTER_PAUSE_S
        log.warning("ingestion counter paused for %.0f s, Redis unavailable: %s", COUNTER_PAUSE_S, exc)


def ingestion_rate(now_s: float | None = None) -> float:
    """Samples stored per second over the last complete minute, from the shared counter."""
    current = int(time.time() if now_s is None else now_s) // INGEST_BUCKET_S
    keys = [INGEST_BUCKET_KEY.format(bucket=current - n) for n in range(1, INGEST_WINDOW_BUCKETS + 1)]
    return sum(int(value or 0) for value in redis_client().mget(keys)) / (INGEST_BUCKET_S * INGEST_WINDOW_BUCKETS)


def note_publish_failure() -> None:
    """Count a failed channel-layer publish. Counted in this process first: the usual cause
    is Redis being away, so the shared counter catches up at the next flush."""
    global _unflushed_publish_failures
    with _publish_failures_lock:
        _unflushed_publish_failures += 1


def flush_publish_failures() -> None:
    """Add this process's uncounted publish failures to the shared counter (no-op when there
    are none, which is every successful publish's case). Never raises."""
    global _unflushed_publish_failures
    if not _unflushed_publish_failures:
        return
    with _publish_failures_lock:
        count, _unflushed_publish_failures = _unflushed_publish_failures, 0
    try:
        redis_client().incrby(PUBLISH_FAILURES_KEY, count)
    except (redis.RedisError, OSError):
        with _publish_failures_lock:
            _unflushed_publish_failures += count


def publish_failures_total() -> int:
    """Failed publishes of every process that flushed, plus this one's own."""
    flush_publish_failures()
    return int(redis_client().get(PUBLISH_FAILURES_KEY) or 0) + _unflushed_publish_failures


# --- Figures ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupLag:
    group: str  # the group's interval, e.g. "60s"
    interval_s: int
    lag_s: float  # age of the least recent evaluation of a rule of the group


@dataclass(frozen=True)
class PipelineFigures:
    """One reading of the pipeline. A figure that could not be read is None (and named in
    `unreadable`); the others are still good."""

    at: datetime
    beat_interval_s: int | None = None
    beat_tick_age_s: float | None = None
    evaluation: tuple[GroupLag, ...] = ()
    queue_lengths: Mapping[str, int] | None = None
    outbox_pending: int | None = None
    outbox_oldest_pending_age_s: float | None = None
    ingestion_rate: float | None = None
    publish_failures: int | None = None
    unreadable: tuple[str, ...] = field(default=())

    def samples(self) -> list:
        """The figures as samples for `ingest_samples`, stamped with the reading's time."""
        from .ingest import SampleIn

        stamp = self.at.timestamp()
        samples = [SampleIn(name, labels, float(value), stamp) for name, labels, value in self._values()]
        return samples

    def _values(self) -> Iterator[tuple[str, dict[str, str], float]]:
        if self.beat_interval_s is not None:
            yield BEAT_INTERVAL_METRIC, {}, self.beat_interval_s
        if self.beat_tick_age_s is not None:
            yield BEAT_AGE_METRIC, {}, self.beat_tick_age_s
        for lag in self.evaluation:
            yield EVALUATION_LAG_METRIC, {"group": lag.group}, lag.lag_s
            yield EVALUATION_INTERVAL_METRIC, {"group": lag.group}, lag.interval_s
        for queue, length in (self.queue_lengths or {}).items():
            yield QUEUE_LENGTH_METRIC, {"queue": queue}, length
        if self.outbox_pending is not None:
            yield OUTBOX_PENDING_METRIC, {}, self.outbox_pending
        if self.outbox_oldest_pending_age_s is not None:
            yield OUTBOX_OLDEST_METRIC, {}, self.outbox_oldest_pending_age_s
        if self.ingestion_rate is not None:
            yield INGESTION_RATE_METRIC, {}, self.ingestion_rate
        if self.publish_failures is not None:
            yield f"{PUBLISH_FAILURES_METRIC}_total", {}, self.publish_failures

    def families(self) -> Iterator[Metric]:
        """The figures as /metrics families (queue lengths are exported by the exposition's
        own collector). A family without a readable figure is still declared, so a stored
        series of the same name never shows up in its place."""
        gauges = {
            BEAT_INTERVAL_METRIC: GaugeMetricFamily(BEAT_INTERVAL_METRIC, "Interval of the beat-run watchdog job."),
            BEAT_AGE_METRIC: GaugeMetricFamily(BEAT_AGE_METRIC, "Seconds since beat last ran the watchdog job."),
            EVALUATION_LAG_METRIC: GaugeMetricFamily(
                EVALUATION_LAG_METRIC, "Seconds since the least recently evaluated rule of a group.", labels=["group"]
            ),
            EVALUATION_INTERVAL_METRIC: GaugeMetricFamily(
                EVALUATION_INTERVAL_METRIC, "Evaluation interval of a group of rules.", labels=["group"]
            ),
            OUTBOX_PENDING_METRIC: GaugeMetricFamily(OUTBOX_PENDING_METRIC, "Notifications pending or sending."),
            OUTBOX_OLDEST_METRIC: GaugeMetricFamily(
                OUTBOX_OLDEST_METRIC, "Seconds the longest-waiting due notification has waited."
            ),
            INGESTION_RATE_METRIC: GaugeMetricFamily(
                INGESTION_RATE_METRIC, "Samples stored per second over the last minute, all processes."
            ),
        }
        failures = CounterMetricFamily(
            PUBLISH_FAILURES_METRIC, "Live-update publishes to the channel layer that failed, all processes."
        )
        for name, labels, value in self._values():
            if name == f"{PUBLISH_FAILURES_METRIC}_total":
                failures.add_metric([], value)
            elif name in gauges:
                gauges[name].add_metric(list(labels.values()), value)
        yield from gauges.values()
        yield failures

    def problems(self) -> list[str]:
        """What made the reading incomplete (the thresholds live in the built-in rules)."""
        return [f"{name} unreadable" for name in self.unreadable]


class _Reader:
    """Reads one figure after another; a figure whose source fails is logged and left out."""

    def __init__(self) -> None:
        self.unreadable: list[str] = []

    def read(self, name: str, read, default=None):
        try:
            return read()
        except (redis.RedisError, OSError, DatabaseError) as exc:
            log.warning("watchdog: %s unreadable: %s: %s", name, exc.__class__.__name__, exc)
            self.unreadable.append(name)
            return default


def collect_figures(now: datetime, *, queues: bool = True, watching_since: datetime | None = None) -> PipelineFigures:
    """Read every figure of the pipeline at `now`. Never raises for a source that is away.
    Before beat's first tick, its age counts from `watching_since` (the built-in rules'
    creation), so a beat that never started is noticed too."""
    reader = _Reader()
    beat_interval = reader.read("beat interval", watchdog_interval)
    tick = (reader.read("beat tick", last_beat_tick) or watching_since) if beat_interval else None
    outbox = reader.read("outbox", lambda: outbox_figures(now), (None, None))
    queue_lengths = None
    if queues:
        from .exposition import celery_queue_lengths, celery_queue_names

        queue_lengths = reader.read("queue lengths", lambda: celery_queue_lengths(celery_queue_names()))
    return PipelineFigures(
        at=now,
        beat_interval_s=beat_interval,
        beat_tick_age_s=max(0.0, (now - tick).total_seconds()) if tick is not None else None,
        evaluation=tuple(reader.read("evaluation lag", lambda: evaluation_lags(now), ())),
        queue_lengths=queue_lengths,
        outbox_pending=outbox[0],
        outbox_oldest_pending_age_s=outbox[1],
        ingestion_rate=reader.read("ingestion rate", lambda: ingestion_rate(now.timestamp())),
        publish_failures=reader.read("publish failures", publish_failures_total),
        unreadable=tuple(reader.unreadable),
    )


def watchdog_interval() -> int | None:
    """Seconds between beat's runs of the watchdog job: its PeriodicTask row's interval (as
    edited in the admin), else the global `sweep_interval`; None while the job is off."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from .models import GlobalSettings

    row = PeriodicTask.objects.filter(name=WATCHDOG_JOB).select_related("interval").first()
    if row is not None:
        if not row.enabled or row.interval is None:
            return None
        seconds = {IntervalSchedule.SECONDS: 1, IntervalSchedule.MINUTES: 60, IntervalSchedule.HOURS: 3600}
        return row.interval.every * seconds.get(row.interval.period, 86_400)
    stored = GlobalSettings.objects.filter(pk=1).values_list(INTERVAL_FIELD, flat=True).first()
    interval = GlobalSettings._meta.get_field(INTERVAL_FIELD).default if stored is None else stored
    return interval or None


def last_beat_tick() -> datetime | None:
    """When beat last started periodic work: the newest of the last claimed periodic run
    (monitoring.periodic's PeriodicRun), the heartbeat the beat-run watchdog task stores
    (`monitoring_beat_last_tick_timestamp_seconds`) and the `last_run_at` django-celery-beat
    itself writes. None if beat never ran."""
    from django_celery_beat.models import PeriodicTask

    from .models import Series

    ticks = []
    try:
        periodic_run = apps.get_model("monitoring", "PeriodicRun")
    except LookupError:  # the claimed-runs table is not there (yet): the heartbeat serves
        periodic_run = None
    if periodic_run is not None:
        claimed = periodic_run.objects.aggregate(last=Max("claimed_at"))["last"]
        if claimed is not None:
            ticks.append(claimed)
    heartbeat = Series.objects.filter(name=BEAT_TICK_METRIC).values_list("last_value", flat=True).first()
    if heartbeat is not None and heartbeat == heartbeat:  # NaN is never a tick
        ticks.append(datetime.fromtimestamp(heartbeat, tz=timezone.get_current_timezone()))
    last_run = PeriodicTask.objects.filter(enabled=True).aggregate(last=Max("last_run_at"))["last"]
    if last_run is not None:
        ticks.append(last_run)
    return max(ticks) if ticks else None


def evaluation_lags(now: datetime) -> list[GroupLag]:
    """Per group of enabled rules sharing an effective evaluation interval (a rule's own
    interval, never shorter than the global one, which is beat's), the age of the least
    recent evaluation of one of its rules (a rule never evaluated counts from its creation).
    Nothing while evaluation is off (a global interval of 0)."""
    from alerts.models import AlertRule

    from .models import GlobalSettings

    stored = GlobalSettings.objects.filter(pk=1).values_list("evaluation_interval", flat=True).first()
    global_interval = GlobalSettings._meta.get_field("evaluation_interval").default if stored is None else stored
    if not global_interval:
        return []
    oldest: dict[int, datetime] = {}
    rows = (
        AlertRule.objects.enabled()
        .values("evaluation_interval")
        .annotate(oldest=Min(Coalesce("last_evaluated_at", "created_at")))
        .values_list("evaluation_interval", "oldest")
    )
    for own_interval, at in rows:
        interval = max(own_interval or global_interval, global_interval)
        if at is not None and (interval not in oldest or at < oldest[interval]):
            oldest[interval] = at
    return [
        GroupLag(f"{interval}s", interval, max(0.0, (now - at).total_seconds()))
        for interval, at in sorted(oldest.items())
    ]


def outbox_figures(now: datetime) -> tuple[int, float]:
    """Notifications pending or sending, and how long the longest-waiting due one has waited
    (pending since its attempt fell due, or sending since its lease ran out; 0 when none).
    A row waiting for its retry backoff is not late: its channel's failure has its own rule."""
    from notifications.choices import NotificationStatus
    from notifications.models import Notification

    pending, sending = NotificationStatus.PENDING, NotificationStatus.SENDING
    row = Notification.objects.filter(status__in=(pending, sending)).aggregate(
        count=Count("pk"),
        due=Min("next_attempt_at", filter=Q(status=pending, next_attempt_at__lte=now)),
        lost=Min("lease_expires_at", filter=Q(status=sending, lease_expires_at__lte=now)),
    )
    waiting = [at for at in (row["due"], row["lost"]) if at is not None]
    return row["count"], max(0.0, (now - min(waiting)).total_seconds()) if waiting else 0.0


# --- The round -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchdogRound:
    figures: PipelineFigures
    open_rules: tuple[str, ...]  # keys of built-in rules with an open alert
    deadman: str  # what became of the dead-man call

    @property
    def healthy(self) -> bool:
        return not self.figures.unreadable and not self.open_rules

    def line(self) -> str:
        state = "healthy" if self.healthy else "unhealthy: " + ", ".join([*self.open_rules, *self.figures.problems()])
        return f"watchdog {state}; dead-man {self.deadman}"


def run_watchdog_round(*, now: datetime | None = None, beat_tick: bool = False) -> WatchdogRound:
    """Read the figures, store them through the ingestion path, evaluate the built-in rules on
    them right here (so their alerts do not wait for beat, which may be what stopped), and
    call the dead-man URL when every figure was read and no built-in rule's alert is open.
    `beat_tick`: this round was started by beat, which is then alive now."""
    from alerts.evaluation import evaluate_rules
    from alerts.models import Alert

    from .ingest import SampleIn, ingest_samples

    now = now or timezone.now()
    # Whole milliseconds, as samples are stored: the evaluation at `now` then sees them.
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    rules = ensure_watchdog_rules()
    if beat_tick:  # stored first: the beat tick figure below reads it back
        ingest_samples([SampleIn(BEAT_TICK_METRIC, {}, now.timestamp(), now.timestamp())], now=now)
    figures = collect_figures(now, watching_since=min(rule.created_at for rule in rules))
    ingest_samples(figures.samples(), now=now)
    enabled = [rule.pk for rule in rules if rule.enabled]
    if enabled:
        evaluate_rules(enabled, now=now)
    open_rules = tuple(
        sorted(set(Alert.objects.open().filter(rule_id__in=enabled).values_list("rule__key", flat=True)))
    )
    _remember_round(now)
    result = WatchdogRound(figures, open_rules, "")
    deadman = call_deadman() if result.healthy else "not called"
    result = WatchdogRound(figures, open_rules, deadman)
    log.info("%s", result.line())
    return result


def _remember_round(now: datetime) -> None:
    try:
        redis_client().set(LAST_ROUND_KEY, now.timestamp(), ex=24 * 3600)
    except (redis.RedisError, OSError) as exc:
        log.warning("watchdog: cannot note the round in Redis: %s", exc)


def last_round_at() -> float | None:
    """Epoch seconds of the last round of any process; None if unknown or Redis is away."""
    try:
        value = redis_client().get(LAST_ROUND_KEY)
    except (redis.RedisError, OSError):
        return None
    return float(value) if value is not None else None


def call_deadman() -> str:
    """Tell the outside dead-man service that this round was healthy: MONITORING_DEADMAN_METHOD
    to MONITORING_DEADMAN_URL through the outbound policy, with a timeout. Never raises; a
    failure is logged (the outside service will notice the silence, which is its purpose)."""
    from .outbound import httpx_client

    url = settings.MONITORING_DEADMAN_URL
    if not url:
        return "not configured"
    try:
        with httpx_client(timeout=settings.MONITORING_DEADMAN_TIMEOUT) as client:
            response = client.request(settings.MONITORING_DEADMAN_METHOD, url)
    except httpx.HTTPError as exc:
        log.warning("dead-man call failed: %s: %s", exc.__class__.__name__, exc)
        return f"failed ({exc.__class__.__name__})"
    if response.is_error:
        log.warning("dead-man call answered HTTP %s", response.status_code)
        return f"failed (HTTP {response.status_code})"
    return "called"


# --- The workers' own watchdog ------------------------------------------------------------------


class WorkerWatchdog(threading.Thread):
    """A thread in a Celery worker's main process that runs the round itself when no round of
    any process happened for two watchdog intervals: that is how "beat stopped" is still
    raised (and notified, through the worker) when beat is what stopped. Several workers may
    each run one then; a round is harmless twice. With Redis away it runs one every interval
    (it cannot see the others' rounds)."""

    def __init__(self, *, check_every: float | None = None) -> None:
        super().__init__(name="monitoring-watchdog", daemon=True)
        self.check_every = check_every
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.check_every or self._interval() or 60):
            self.tick()
            close_old_connections()  # this thread's own connection, as a task's would be

    def stop(self) -> None:
        self.stopping.set()

    def tick(self) -> WatchdogRound | None:
        """Run a round if none ran lately; None when it was not needed or could not run."""
        try:
            interval = watchdog_interval()
            last = last_round_at()
            if interval is None or (last is not None and time.time() - last < 2 * interval):
                return None
            log.warning("watchdog: no round for %s s; the worker runs one (is beat running?)", 2 * interval)
            return run_watchdog_round()
        # The thread must outlive any failure of a round (the next one may succeed); the
        # traceback goes to the log.
        except Exception:
            log.exception("watchdog round in the worker failed")
            return None

    def _interval(self) -> int | None:
        try:
            return watchdog_interval()
        except DatabaseError:
            return None


_worker_watchdog: WorkerWatchdog | None = None


def start_worker_watchdog(**_: object) -> None:
    """worker_ready: start this worker's watchdog thread (MONITORING_WATCHDOG_IN_WORKER)."""
    global _worker_watchdog
    if settings.MONITORING_WATCHDOG_IN_WORKER and _worker_watchdog is None:
        _worker_watchdog = WorkerWatchdog()
        _worker_watchdog.start()
        log.info("watchdog thread started: a round whenever none ran for two watchdog intervals")


def stop_worker_watchdog(**_: object) -> None:
    global _worker_watchdog
    if _worker_watchdog is not None:
        _worker_watchdog.stop()
        _worker_watchdog = None
        log.info("watchdog thread stopped")


def connect_worker_signals() -> None:
    from celery.signals import worker_ready, worker_shutdown

    worker_ready.connect(start_worker_watchdog, dispatch_uid="monitoring-watchdog-start", weak=False)
    worker_shutdown.connect(stop_worker_watchdog, dispatch_uid="monitoring-watchdog-stop", weak=False)


def exposition_families(now: datetime | None = None) -> Iterator[Metric]:
    """The watchdog's families for /metrics, read at scrape time (queue lengths excepted)."""
    from alerts.models import AlertRule

    now = now or timezone.now()
    since = AlertRule.objects.filter(key__startswith=RULE_PREFIX).aggregate(since=Min("created_at"))["since"]
    yield from collect_figures(now, queues=False, watching_since=since).families()
