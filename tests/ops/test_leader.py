"""The beat leader lock against a real Redis (the embedded one, or REDIS_URL's): one holder
leads, a standby takes over when the leader stops renewing, a holder that lost the lock
never extends or deletes another's; and the beat scheduler sends only while it leads."""

import json
import time
import uuid
from datetime import timedelta

import pytest
import redis
from celery import Celery
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from monitoring.leader import LeaderLock, LeaderScheduler
from monitoring.periodic import WINDOW_HEADER
from monitoring.redis import redis_client

TTL = 0.6
RENEW = 0.2


@pytest.fixture
def client() -> redis.Redis:
    return redis_client()


@pytest.fixture
def key(client) -> str:
    name = f"test:beat-leader:{uuid.uuid4().hex}"
    yield name
    client.delete(name)


def lock(client: redis.Redis, key: str, identity: str) -> LeaderLock:
    return LeaderLock(client, key=key, ttl=TTL, renew_every=RENEW, identity=identity)


def test_of_two_holders_one_leads(client, key):
    first, second = lock(client, key, "first"), lock(client, key, "second")

    assert first.check()
    assert not second.check()
    assert first.holder() == first.token and first.token.startswith("first:")
    assert 0 < client.pttl(key) <= TTL * 1000


def test_the_leader_renews_its_lock_and_keeps_leading(client, key):
    first, second = lock(client, key, "first"), lock(client, key, "second")
    first.check()

    for _ in range(5):  # 5 renewals span well over one TTL
        time.sleep(RENEW)
        assert first.check()
        assert not second.check()
    assert first.holder() == first.token


def test_a_standby_takes_over_once_the_leader_stops_renewing(client, key):
    first, second = lock(client, key, "first"), lock(client, key, "second")
    assert first.check()
    assert not second.check()

    time.sleep(TTL + 0.1)  # the leader hangs: no renewal for longer than the TTL

    assert second.check()
    assert first.holder() == second.token


def test_a_holder_that_lost_the_lock_neither_extends_nor_deletes_the_new_one(client, key):
    first, second = lock(client, key, "first"), lock(client, key, "second")
    first.check()
    time.sleep(TTL + 0.1)
    assert second.check()

    assert not first.check(now=time.monotonic() + 60)  # its renewal finds another token
    first.release()

    assert client.get(key).decode() == second.token
    assert client.pttl(key) > 0
    assert second.check(now=time.monotonic() + 60)  # still renewable by its holder


def test_a_clean_release_lets_the_standby_lead_at_once(client, key):
    first, second = lock(client, key, "first"), lock(client, key, "second")
    first.check()
    assert not second.check()

    first.release()

    assert client.get(key) is None
    assert second.check(now=time.monotonic() + 60)


def test_leadership_changes_are_logged(client, key, caplog):
    first, second = lock(client, key, "first"), lock(client, key, "second")
    with caplog.at_level("INFO", logger="beat_leader"):
        first.check()
        second.check()
        time.sleep(TTL + 0.1)
        second.check(now=time.monotonic() + 60)
        first.check(now=time.monotonic() + 60)

    messages = [record.getMessage() for record in caplog.records]
    assert any(f"taken by {first.token}" in m for m in messages)
    assert any(f"held by {first.token}: {second.token} stands by" in m for m in messages)
    assert any(f"taken by {second.token}" in m for m in messages)
    assert any(f"lost by {first.token}" in m for m in messages)


def test_a_renewal_interval_not_below_the_ttl_is_refused(client, key):
    with pytest.raises(ValueError, match="below the TTL"):
        LeaderLock(client, key=key, ttl=10, renew_every=10)


# --- the beat scheduler -------------------------------------------------------------------


@pytest.fixture
def beat_app(settings, key):
    """A Celery app on the test's broker whose messages go to a queue of this test only."""
    settings.MONITORING_BEAT_LOCK_KEY = key
    settings.MONITORING_BEAT_LOCK_TTL = TTL
    settings.MONITORING_BEAT_LOCK_RENEW = RENEW
    queue = f"test-beat-{uuid.uuid4().hex[:8]}"
    app = Celery("beat-test", broker=settings.CELERY_BROKER_URL, set_as_current=False)
    app.conf.update(task_default_queue=queue, beat_sync_every=1, timezone="UTC")
    yield app, queue
    redis_client().delete(queue)


def sent_messages(queue: str) -> list[dict]:
    """The messages waiting in `queue` (the broker is the project's Redis: a list per queue),
    taken off it."""
    client = redis_client()
    raw = client.lrange(queue, 0, -1)
    client.delete(queue)
    return [json.loads(message) for message in reversed(raw)]


@pytest.mark.django_db(transaction=True)
def test_only_the_scheduler_holding_the_lock_sends_and_a_new_leader_does_not_resend(beat_app):
    app, queue = beat_app
    PeriodicTask.objects.update(enabled=False)
    every = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    row = PeriodicTask.objects.create(
        name="test: leader", task="monitoring.tasks.cleanup_task", interval=every,
        last_run_at=timezone.now() - timedelta(minutes=5),
    )  # fmt: skip
    first, second = LeaderScheduler(app=app), LeaderScheduler(app=app)
    try:
        for _ in range(3):
            first.tick()
            second.tick()

        messages = sent_messages(queue)
        assert [m["headers"]["task"] for m in messages] == ["monitoring.tasks.cleanup_task"]
        row.refresh_from_db()
        window = messages[0]["headers"][WINDOW_HEADER]
        assert window == {"at": pytest.approx(row.last_run_at.timestamp()), "every": 60.0}
        assert first.leader.is_leader and not second.leader.is_leader

        first.close()  # a clean stop releases the lock
        second.leader._checked_at = float("-inf")  # its next tick checks at once
        for _ in range(3):
            second.tick()

        assert second.leader.is_leader
        assert sent_messages(queue) == []  # it read the last run the first leader recorded
    finally:
        first.close()
        second.close()
    assert redis_client().get(settings.MONITORING_BEAT_LOCK_KEY) is None
