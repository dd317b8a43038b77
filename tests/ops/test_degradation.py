"""Graceful degradation: with Redis stopped (a redis-server of the test's own, the cache, the
channel layer and the broker all pointed at it) pushes are stored, pages render, /readyz says
degraded, an alert transition commits its outbox row and is delivered once Redis is back;
with the database cut (a TCP proxy in front of PostgreSQL, or an unreachable SQLite file)
/readyz and the push API answer 503, and a task retries until the database answers again."""

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.signals import task_retry
from django.db import connection, connections
from django.utils import timezone

from alerts.evaluation import evaluate_rules
from alerts.models import Alert, AlertRule
from config.celery import app as celery_app
from monitoring.ingest import SampleIn, ingest_samples
from monitoring.models import Series
from monitoring.redis import redis_client
from notifications.choices import NotificationStatus
from notifications.models import Notification, NotificationChannel
from notifications.outbox import sweep_outbox
from notifications.tasks import sweep_outbox_task
from tests.notifications.conftest import shared_db  # noqa: F401 (a fixture: the database, committed, on a file)
from tests.notifications.servers import Receiver


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class OwnRedis:
    """A redis-server of this test on a free port, without persistence: stop() and start()
    keep the address, as a restarted Redis does."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def answering(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except (redis.RedisError, OSError):
            return False

    def start(self) -> None:
        argv = [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.directory), "--loglevel", "warning"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.answering, timeout=10, what="the test's redis-server")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def _point_celery_at(url: str) -> None:
    # The app keeps its connection pools: new ones, on the new URL (the old ones are left as
    # they are, in use elsewhere maybe).
    celery_app.conf.broker_url = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def own_redis(settings, tmp_path) -> Iterator[OwnRedis]:
    """The cache, the channel layer, the broker and our Redis client all on a Redis of this
    test's own, started; the test stops and starts it."""
    server = OwnRedis(tmp_path)
    server.start()
    broker_before = celery_app.conf.broker_url
    settings.REDIS_URL = server.url
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": server.url}}
    settings.CHANNEL_LAYERS = {
        "default": {**settings.CHANNEL_LAYERS["default"], "CONFIG": {"hosts": [{"address": server.url}]}}
    }
    settings.CELERY_BROKER_URL = server.url
    _point_celery_at(server.url)
    redis_client.cache_clear()
    try:
        yield server
    finally:
        server.stop()
        _point_celery_at(broker_before)
        redis_client.cache_clear()


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of `upstream`: cut() closes the listener and every
    connection through it (clients see a dead server), restore() listens again on the port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.listener: socket.socket | None = None

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        if self.listener is not None:
            # shutdown() first: a plain close() does not wake the thread blocked in accept(),
            # which would go on accepting on Linux.
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open.update((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class DatabaseSwitch:
    """Makes the configured database unavailable and available again for every thread's next
    connection: PostgreSQL through a TcpProxy that is cut, SQLite (a file) by pointing the
    settings at a file that cannot be opened."""

    def __init__(self, tmp_path: Path) -> None:
        self.settings = connections.settings["default"]
        self.original = dict(self.settings)
        self.proxy: TcpProxy | None = None
        if connection.vendor == "postgresql":
            self.proxy = TcpProxy((self.original["HOST"] or "127.0.0.1", int(self.original["PORT"] or 5432)))
            self.proxy.restore()
            self.settings.update(HOST="127.0.0.1", PORT=str(self.proxy.port))
        self.unopenable = str(tmp_path / "no-such-directory" / "db.sqlite3")
        connection.close()

    def cut(self) -> None:
        if self.proxy is not None:
            self.proxy.cut()
        else:
            self.settings["NAME"] = self.unopenable
        connection.close()

    def restore(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
        else:
            self.settings["NAME"] = self.original["NAME"]
        connection.close()

    def undo(self) -> None:
        self.settings.clear()
        self.settings.update(self.original)
        if self.proxy is not None:
            self.proxy.cut()
        connection.close()


@pytest.fixture
def database_switch(shared_db, tmp_path) -> Iterator[DatabaseSwitch]:  # noqa: F811
    from django.contrib.auth.models import Group, Permission

    from monitoring.roles import sync_role_groups

    sync_role_groups(Group, Permission)  # a transactional test starts without the migrations' groups
    switch = DatabaseSwitch(tmp_path)
    try:
        yield switch
    finally:
        switch.undo()


def push(client, key: str, samples: list[dict]):
    return client.post(
        "/api/metrics", data=json.dumps({"samples": samples}), content_type="application/json", HTTP_X_API_KEY=key
    )


# --- Redis down ------------------------------------------------------------------------------------


def test_push_is_stored_while_redis_is_down(client, api_keys, own_redis):
    own_redis.stop()
    response = push(client, api_keys["viewer"], [{"metric": "door_open", "labels": {"d": "1"}, "value": 1}])
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1
    assert Series.objects.get(name="door_open").last_value == 1


def test_pages_and_read_api_render_from_the_database_while_redis_is_down(client, users, api_keys, own_redis):
    ingest_samples([SampleIn("temp", {"room": "a"}, 21.5, None)])
    own_redis.stop()
    client.force_login(users["viewer"])
    for page in ("/", "/alerts/", "/metrics"):
        assert client.get(page).status_code == 200, page
    client.logout()
    response = client.get("/api/status", HTTP_X_API_KEY=api_keys["viewer"])
    assert response.status_code == 200
    assert response.json()["success"] is True


def test_readyz_is_degraded_not_down_while_only_redis_is_down(client, own_redis, db):
    assert client.get("/readyz").json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}
    own_redis.stop()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "checks": {"database": "ok", "redis": "unreachable"}}


def test_login_still_works_while_redis_is_down(client, users, own_redis):
    own_redis.stop()
    response = client.post("/login/", {"username": "viewer", "password": "correct horse battery"})
    assert response.status_code == 302


def test_alert_during_outage_commits_its_outbox_row_and_is_delivered_once_after(
    transactional_db, own_redis, django_capture_on_commit_callbacks
):
    receiver = Receiver()
    try:
        channel = NotificationChannel.objects.create(
            name="ops", key="ops", kind="webhook", config={"url": f"{receiver.url}/hook", "timeout": 2}
        )
        rule = AlertRule.objects.create(name="hot", key="hot", metric="temp_c", comparison=">", threshold=50)
        rule.channels.set([channel])
        own_redis.stop()

        now = timezone.now().replace(microsecond=0)  # as stored: the evaluation at `now` sees the sample
        ingest_samples([SampleIn("temp_c", {"room": "a"}, 80.0, now.timestamp())], now=now)
        summary = evaluate_rules([rule.pk], now=now)  # the broker is away when its transaction commits

        assert summary.transitions == {"active": 1}
        alert = Alert.objects.get(rule=rule)
        row = Notification.objects.get(alert=alert)
        assert row.status == NotificationStatus.PENDING
        assert receiver.requests == []

        own_redis.start()
        sweep_outbox(budget_s=5)
        sweep_outbox(budget_s=5)  # a second sweep sends nothing twice
        assert [request.path for request in receiver.requests] == ["/hook"]
        row.refresh_from_db()
        assert row.status == NotificationStatus.SENT
    finally:
        receiver.close()


# --- Database down -------------------------------------------------------------------------------


def test_push_answers_503_with_retry_after_while_the_database_is_down(database_switch, client, api_keys):
    database_switch.cut()
    response = push(client, api_keys["viewer"], [{"metric": "door_open", "value": 1}])
    assert response.status_code == 503
    assert response["Retry-After"] == "10"
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert "database is unavailable" in error["message"]
    assert client.get("/readyz").status_code == 503

    database_switch.restore()
    assert push(client, api_keys["viewer"], [{"metric": "door_open", "value": 1}]).status_code == 200
    assert Series.objects.filter(name="door_open").count() == 1


def test_a_task_retries_through_a_database_blip_and_completes(database_switch, own_redis, settings):
    """The outbox sweep starts while the database is cut: it fails with OperationalError, is
    retried by the worker with backoff, and delivers once the database is back."""
    settings.MONITORING_WATCHDOG_IN_WORKER = False
    receiver = Receiver()
    retries: list[str] = []

    def on_retry(sender=None, reason=None, **kwargs) -> None:
        retries.append(getattr(reason, "exc", reason).__class__.__name__)  # a Retry, carrying the error

    task_retry.connect(on_retry, weak=False)
    try:
        channel = NotificationChannel.objects.create(
            name="ops", key="ops", kind="webhook", config={"url": f"{receiver.url}/hook", "timeout": 2}
        )
        rule = AlertRule.objects.create(name="hot", key="hot", metric="temp_c", comparison=">", threshold=50)
        alert = Alert.objects.create(rule=rule, fingerprint="a" * 32, labels={}, severity="high", state="active")
        row = Notification.objects.create(
            alert=alert, channel=channel, event="firing", status=NotificationStatus.PENDING, idempotency_key="b" * 32
        )
        database_switch.cut()
        with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            sweep_outbox_task.apply_async(queue=settings.NOTIFICATIONS_QUEUE)
            wait_until(lambda: retries, timeout=30, what="the sweep's first retry")
            database_switch.restore()
            wait_until(lambda: receiver.requests, timeout=60, what="the delivery after the database returned")
        assert retries[0] == "OperationalError"
        assert [request.path for request in receiver.requests] == ["/hook"]
        row.refresh_from_db()
        assert row.status == NotificationStatus.SENT
    finally:
        task_retry.disconnect(on_retry)
        receiver.close()


def test_watchdog_round_records_what_it_can_read_while_redis_is_down(own_redis, settings, db):
    from monitoring import watchdog
    from monitoring.schedule import sync_periodic_tasks

    sync_periodic_tasks()
    settings.MONITORING_DEADMAN_URL = "http://127.0.0.1:9/never-called"
    own_redis.stop()

    result = watchdog.run_watchdog_round(beat_tick=True)

    assert set(result.figures.unreadable) == {"queue lengths", "ingestion rate", "publish failures"}
    assert not result.healthy
    assert result.deadman == "not called"
    stored = set(Series.objects.filter(name__startswith="monitoring_").values_list("name", flat=True))
    assert {watchdog.BEAT_AGE_METRIC, watchdog.OUTBOX_PENDING_METRIC, watchdog.EVALUATION_LAG_METRIC} <= stored
    assert watchdog.QUEUE_LENGTH_METRIC not in stored


def test_publish_failures_during_the_outage_reach_the_shared_counter_after_it(own_redis):
    from dashboard.publish import publish
    from monitoring import watchdog

    watchdog.flush_publish_failures()  # what earlier tests of this process left uncounted
    redis_client().delete(watchdog.PUBLISH_FAILURES_KEY)
    own_redis.stop()
    assert publish("alerts", "alert.changed", {"id": 1}) is False
    assert publish("alerts", "alert.changed", {"id": 2}) is False
    own_redis.start()
    assert publish("alerts", "alert.changed", {"id": 3}) is True  # flushes what this process counted
    assert int(redis_client().get(watchdog.PUBLISH_FAILURES_KEY)) == 2


class SilentServer:
    """A TCP server that accepts connections and never answers: a Redis that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.listener.accept()[0])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for sock in self.accepted:
            sock.close()


def test_a_hanging_redis_times_out_one_publish_then_publishing_pauses(settings, monkeypatch):
    from dashboard import publish as publishing

    monkeypatch.setattr(publishing, "_paused_until", 0.0)
    server = SilentServer()
    try:
        settings.CHANNEL_LAYERS = {
            "default": {
                **settings.CHANNEL_LAYERS["default"],
                "CONFIG": {"hosts": [{"address": f"redis://127.0.0.1:{server.port}/0", "socket_timeout": 0.5}]},
            }
        }
        failures = publishing.publish_failures
        assert publishing.publish("alerts", "alert.changed", {"id": 1}) is False  # times out
        connections_tried = len(server.accepted)
        assert connections_tried >= 1
        assert publishing.publish("alerts", "alert.changed", {"id": 2}) is False  # paused: not even tried
        assert len(server.accepted) == connections_tried
        assert publishing.publish_failures == failures + 2
    finally:
        server.close()
