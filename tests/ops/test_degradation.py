"""Graceful degradation: with Redis stopped (a redis-server of the test's own, the cache, the
channel layer and the broker all pointed at it) pushes are stored, pages render, /readyz says
degraded, an alert transition commits its outbox row and is delivered once Redis is back;
with the database cut (a TCP proxy in front of PostgreSQL, or an unreachable SQLite file)
/readyz and the push API answer 503, and a task retries until the database answers again."""

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
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

        now = timezone.now()
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
