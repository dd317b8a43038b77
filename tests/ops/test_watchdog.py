"""The pipeline watchdog: its figures (stored through ingestion and on /metrics), the built-in
rules it evaluates and notifies through every working channel, the workers' own round when
beat stopped, and the dead-man call after a healthy round only."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from django.db.models import Max
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from prometheus_client.parser import text_string_to_metric_families

from alerts.models import Alert, AlertRule
from monitoring import watchdog
from monitoring.ingest import SampleIn, ingest_samples
from monitoring.models import Series
from monitoring.redis import redis_client
from monitoring.schedule import sync_periodic_tasks
from notifications.choices import NotificationStatus
from notifications.models import Notification, NotificationChannel
from notifications.outbox import sweep_outbox
from tests.notifications.servers import Receiver


class DeadmanServer:
    """An HTTP server on 127.0.0.1 that records the method and path of every request."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                recorder.hits.append((self.command, self.path))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_HEAD = _record

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ping/abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _fresh_watchdog_keys() -> None:
    """The shared counters and the last-round mark live in Redis, which tests share."""
    client = redis_client()
    for key in client.scan_iter("mon:watchdog:*"):
        client.delete(key)


@pytest.fixture
def deadman(settings) -> Iterator[DeadmanServer]:
    server = DeadmanServer()
    settings.MONITORING_DEADMAN_URL = server.url
    yield server
    server.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def schedule(db) -> None:
    sync_periodic_tasks()


def make_webhook(key: str, url: str, **fields) -> NotificationChannel:
    return NotificationChannel.objects.create(
        name=key, key=key, kind="webhook", config={"url": url, "timeout": 2}, **fields
    )


def last_value(metric: str, **labels: str) -> float | None:
    for series in Series.objects.filter(name=metric):
        if all(series.labels.get(k) == v for k, v in labels.items()):
            return series.last_value
    return None


def stale_pending_notification(*, waited_s: float) -> Notification:
    """A pending notification due `waited_s` ago, of an alert of an ordinary rule."""
    now = timezone.now()
    channel = NotificationChannel.objects.create(
        name="quiet", key="quiet", kind="webhook", config={"url": "http://127.0.0.1:9/"}, enabled=False
    )
    rule = AlertRule.objects.create(name="cpu", key="cpu", metric="cpu", comparison=">", threshold=1)
    alert = Alert.objects.create(rule=rule, fingerprint="f" * 32, labels={}, severity="high", state="active")
    return Notification.objects.create(
        alert=alert,
        channel=channel,
        event="firing",
        status=NotificationStatus.PENDING,
        idempotency_key="k" * 32,
        next_attempt_at=now - timedelta(seconds=waited_s),
        created_at=now - timedelta(seconds=waited_s),
    )


def test_round_stores_every_figure_through_ingestion(schedule):
    stale_pending_notification(waited_s=42)
    AlertRule.objects.create(
        name="slow", key="slow", metric="m", comparison=">", threshold=1, evaluation_interval=600,
        last_evaluated_at=timezone.now() - timedelta(seconds=700),
    )  # fmt: skip
    watchdog.count_ingested(120)
    redis_client().incrby(
        watchdog.INGEST_BUCKET_KEY.format(bucket=int(timezone.now().timestamp()) // 10 - 1), 600
    )  # a complete bucket of the last minute

    result = watchdog.run_watchdog_round(beat_tick=True)

    assert last_value(watchdog.BEAT_AGE_METRIC) == 0  # this very round was beat's tick
    assert last_value(watchdog.BEAT_INTERVAL_METRIC) == 15  # sweep_interval's default
    assert last_value(watchdog.OUTBOX_PENDING_METRIC) == 1
    assert 41 <= last_value(watchdog.OUTBOX_OLDEST_METRIC) < 60
    assert last_value(watchdog.INGESTION_RATE_METRIC) == 600 / 60
    assert 699 <= last_value(watchdog.EVALUATION_LAG_METRIC, group="600s") < 720
    assert last_value(watchdog.EVALUATION_INTERVAL_METRIC, group="600s") == 600
    assert last_value(watchdog.EVALUATION_INTERVAL_METRIC, group="60s") == 60  # the built-in rules' group
    assert last_value(watchdog.QUEUE_LENGTH_METRIC, queue="notifications") is not None
    assert last_value(f"{watchdog.PUBLISH_FAILURES_METRIC}_total") is not None
    assert result.figures.unreadable == ()


def test_figures_are_exported_on_metrics(client, users, schedule):
    stale_pending_notification(waited_s=30)
    client.force_login(users["viewer"])
    body = client.get("/metrics").content.decode()
    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert families[watchdog.OUTBOX_PENDING_METRIC].samples[0].value == 1
    assert families[watchdog.OUTBOX_OLDEST_METRIC].samples[0].value >= 29
    assert families["monitoring_channel_publish_failures"].type == "counter"
    for name in (watchdog.BEAT_AGE_METRIC, watchdog.INGESTION_RATE_METRIC, watchdog.EVALUATION_LAG_METRIC):
        assert name in families
    assert "monitoring_celery_queue_length" in families


def test_builtin_rules_are_created_once_and_keep_admin_edits(db):
    first = watchdog.ensure_watchdog_rules()
    AlertRule.objects.filter(key="watchdog-outbox-backed-up").update(threshold=60, enabled=False)
    second = watchdog.ensure_watchdog_rules()
    assert [r.pk for r in first] == [r.pk for r in second]
    assert AlertRule.objects.filter(key__startswith="watchdog-").count() == len(watchdog.BUILTIN_RULES)
    edited = AlertRule.objects.get(key="watchdog-outbox-backed-up")
    assert (edited.threshold, edited.enabled) == (60, False)


def test_backed_up_outbox_fires_and_notifies_every_working_channel(schedule, receiver, deadman):
    working = make_webhook("ops-hook", f"{receiver.url}/hook")
    broken = make_webhook("broken-hook", f"{receiver.url}/broken", failing_since=timezone.now())
    stale_pending_notification(waited_s=400)

    result = watchdog.run_watchdog_round(beat_tick=True)

    assert result.open_rules == ("watchdog-outbox-backed-up",)
    assert not result.healthy
    alert = Alert.objects.get(rule__key="watchdog-outbox-backed-up")
    assert alert.state == "active"
    channels = set(Notification.objects.filter(alert=alert).values_list("channel__key", flat=True))
    assert channels == {working.key}  # not the failing one
    assert broken.key not in channels
    sweep_outbox(budget_s=5)
    paths = [request.path for request in receiver.requests]
    assert paths.count("/hook") == 1
    assert deadman.hits == []  # an unhealthy round never calls the dead-man


def test_healthy_round_calls_the_deadman_once(schedule, deadman, settings):
    result = watchdog.run_watchdog_round(beat_tick=True)
    assert result.healthy, result.line()
    assert result.deadman == "called"
    assert deadman.hits == [("GET", "/ping/abc")]

    settings.MONITORING_DEADMAN_METHOD = "POST"
    watchdog.run_watchdog_round(beat_tick=True)
    assert deadman.hits[-1] == ("POST", "/ping/abc")


def test_deadman_failure_is_logged_not_raised(schedule, settings, caplog):
    settings.MONITORING_DEADMAN_URL = "http://127.0.0.1:9/ping"  # nothing listens on the discard port
    result = watchdog.run_watchdog_round(beat_tick=True)
    assert result.deadman.startswith("failed")
    assert "dead-man call failed" in caplog.text


def test_worker_runs_the_round_and_raises_beat_stopped_when_beat_is_silent(schedule, receiver):
    make_webhook("ops-hook", f"{receiver.url}/hook")
    watchdog.ensure_watchdog_rules()
    AlertRule.objects.filter(key__startswith="watchdog-").update(created_at=timezone.now() - timedelta(hours=1))
    long_ago = timezone.now() - timedelta(minutes=10)
    ingest_samples([SampleIn(watchdog.BEAT_TICK_METRIC, {}, long_ago.timestamp(), long_ago.timestamp())])
    PeriodicTask.objects.update(last_run_at=long_ago)

    result = watchdog.WorkerWatchdog(check_every=1).tick()

    assert result is not None
    assert "watchdog-beat-stopped" in result.open_rules
    assert 589 <= last_value(watchdog.BEAT_AGE_METRIC) < 700
    alert = Alert.objects.get(rule__key="watchdog-beat-stopped")
    assert alert.state == "active" and alert.severity == "critical"
    assert Notification.objects.filter(alert=alert, channel__key="ops-hook").exists()


def test_worker_leaves_the_round_to_beat_while_beat_runs_it(schedule):
    watchdog.run_watchdog_round(beat_tick=True)
    assert watchdog.WorkerWatchdog(check_every=1).tick() is None


def test_beat_tick_counts_from_the_watchdogs_start_when_beat_never_ran(schedule):
    watchdog.ensure_watchdog_rules()
    started = timezone.now() - timedelta(minutes=5)
    AlertRule.objects.filter(key__startswith="watchdog-").update(created_at=started)
    assert PeriodicTask.objects.aggregate(last=Max("last_run_at"))["last"] is None

    result = watchdog.run_watchdog_round()

    assert 299 <= result.figures.beat_tick_age_s < 360
    assert "watchdog-beat-stopped" in result.open_rules


def test_evaluation_behind_fires_for_the_late_group_only(schedule):
    AlertRule.objects.create(
        name="late", key="late", metric="m", comparison=">", threshold=1, evaluation_interval=120,
        last_evaluated_at=timezone.now() - timedelta(seconds=400),
    )  # fmt: skip
    result = watchdog.run_watchdog_round(beat_tick=True)
    alerts = Alert.objects.filter(rule__key="watchdog-evaluation-behind")
    assert [a.labels.get("group") for a in alerts] == ["120s"]
    assert result.open_rules == ("watchdog-evaluation-behind",)


def test_ingestion_rate_counts_every_stored_batch(db, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr(watchdog, "_counter_sent_at", float("-inf"))  # this process last sent long ago
    monkeypatch.setattr(watchdog, "_unsent_ingested", 0)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        ingest_samples([SampleIn("m", {"i": str(i)}, 1.0, now.timestamp()) for i in range(30)], now=now)
    bucket = watchdog.INGEST_BUCKET_KEY.format(bucket=int(now.timestamp()) // watchdog.INGEST_BUCKET_S)
    assert int(redis_client().get(bucket)) == 30
    assert watchdog.ingestion_rate(now.timestamp() + watchdog.INGEST_BUCKET_S) == 30 / 60


def test_publish_failures_are_counted_across_processes_once_redis_answers():
    before = watchdog.publish_failures_total()
    watchdog.note_publish_failure()
    watchdog.note_publish_failure()
    assert watchdog.publish_failures_total() == before + 2
    assert int(redis_client().get(watchdog.PUBLISH_FAILURES_KEY)) == before + 2  # flushed to the shared counter



def test_a_worker_starts_its_watchdog_thread_when_ready_and_stops_it_on_shutdown(tmp_path):
    """A real `celery worker` (in-memory broker, a database of its own): the thread starts
    once the worker is ready and stops with it."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MONITORING_VAR_DIR")},
        "MONITORING_VAR_DIR": str(tmp_path),
        "MONITORING_WATCHDOG_IN_WORKER": "true",
        "LOG_STREAM": "stderr",
    }
    argv = [sys.executable, "-m", "celery", "-A", "config", "-b", "memory://", "worker", "-P", "solo", "-l", "INFO"]
    worker = subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(worker.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("watchdog thread started" in line for line in lines):
            assert worker.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        reader.join(5)
    assert any("watchdog thread stopped" in line for line in lines), "".join(lines)


@pytest.mark.parametrize("rules", [1, 40])
def test_reading_the_figures_costs_the_same_queries_for_any_number_of_rules(
    schedule, rules, django_assert_max_num_queries
):
    for n in range(rules):
        AlertRule.objects.create(
            name=f"r{n}", key=f"r{n}", metric="m", comparison=">", threshold=1, evaluation_interval=60 * (n % 5)
        )
    stale_pending_notification(waited_s=10)
    with django_assert_max_num_queries(7):
        figures = watchdog.collect_figures(timezone.now())
    # Own intervals of 0 (none) and 60 s join the global 60 s group.
    groups = sorted({60 * max(n % 5, 1) for n in range(rules)})
    assert [lag.group for lag in figures.evaluation] == [f"{interval}s" for interval in groups]


def test_the_beat_task_runs_a_round_as_beats_tick_and_records_its_window(schedule):
    from monitoring.models import PeriodicRun
    from monitoring.tasks import watch_pipeline_task

    sent_by_beat = {"monitoring_window": {"at": timezone.now().timestamp(), "every": 15}}
    line = watch_pipeline_task.apply(headers=sent_by_beat).get()

    assert line.startswith("watchdog healthy"), line
    assert last_value(watchdog.BEAT_AGE_METRIC) == 0
    run = PeriodicRun.objects.get(job="monitoring.tasks.watch_pipeline_task")
    assert run.ok is True and run.detail == line
