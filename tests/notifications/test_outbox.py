"""The durable outbox: rows written with the transition, delivered after commit, retried,
swept, and never sent twice; held back while silenced or suppressed."""

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, transaction

from alerts.choices import AlertState
from alerts.evaluation import evaluate_rules
from alerts.history import record_event
from alerts.lifecycle import acknowledge_alert, resolve_alert
from alerts.models import Alert, AlertRule
from alerts.silencing import create_silence
from config.celery import app as celery_app
from monitoring.choices import AuditSource
from monitoring.ingest import SampleIn, ingest_samples
from monitoring.models import GlobalSettings, Series
from monitoring.redis import redis_client
from notifications import outbox
from notifications.choices import NotificationEvent, NotificationStatus
from notifications.models import Notification, NotificationChannel
from notifications.services import sweep_escalations

from .helpers import T0, FakeClock, fire
from .servers import Reply

pytestmark = pytest.mark.django_db


def statuses() -> Counter:
    return Counter(Notification.objects.values_list("status", flat=True))


def series_value(name: str, **labels: str) -> float | None:
    """The last value stored for the series `name{labels}` (labels compared as a whole)."""
    (value,) = [s.last_value for s in Series.objects.filter(name=name) if s.labels == labels]
    return value


# --- Writing rows with the transition ---------------------------------------------------------------


def test_firing_queues_one_row_per_enabled_rule_channel_in_the_transition(webhook_channel, make_channel, make_rule):
    hook = webhook_channel()
    off = make_channel("slack", "slack-off", webhook_url="http://127.0.0.1:9/x", enabled=False)
    rule = make_rule(channels=[hook, off])
    alert = fire(rule, T0)

    (row,) = Notification.objects.all()
    assert (row.alert_id, row.channel_id, row.event, row.escalation_step) == (alert.pk, hook.pk, "firing", 0)
    assert row.status == NotificationStatus.PENDING and row.attempts == 0
    assert len(row.idempotency_key) == 32


def test_a_transition_rolled_back_leaves_no_notification(webhook_channel, make_rule):
    rule = make_rule(channels=[webhook_channel()])
    with pytest.raises(RuntimeError), transaction.atomic():
        alert = Alert.objects.create(rule=rule, fingerprint="x", labels={}, severity="high", state=AlertState.ACTIVE)
        record_event(alert=alert, from_state="", to_state=AlertState.ACTIVE, at=T0)
        assert Notification.objects.count() == 1
        raise RuntimeError("the transition failed")
    assert Notification.objects.count() == 0


def test_queueing_the_same_notification_again_is_already_queued(webhook_channel, make_rule):
    hook = webhook_channel()
    alert = fire(make_rule(channels=[hook]), T0)
    with transaction.atomic():
        again = outbox.enqueue(alert=alert, channels=[hook], event=NotificationEvent.FIRING, now=T0)
        # The savepoint kept the surrounding transaction usable.
        assert Notification.objects.filter(alert=alert).count() == 1
    assert again == []


def test_channels_that_ignore_an_event_get_no_row(webhook_channel, make_rule, receiver):
    am = webhook_channel("am", format="alertmanager")
    rule = make_rule(channels=[am])
    alert = fire(rule, T0)
    acknowledge_alert(alert_id=alert.pk, user=None, source=AuditSource.SYSTEM, now=T0 + timedelta(minutes=1))
    assert list(Notification.objects.values_list("event", flat=True)) == ["firing"]


def test_rows_are_handed_to_the_notifications_queue_after_commit(
    webhook_channel, make_rule, django_capture_on_commit_callbacks
):
    rule = make_rule(channels=[webhook_channel(), webhook_channel("second")])
    client = redis_client()
    before = client.llen(settings.NOTIFICATIONS_QUEUE)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        fire(rule, T0, {"host": "a"})
        fire(rule, T0, {"host": "b"})
    # One delivery task for everything the transaction queued, not one per row.
    assert sum(isinstance(c, outbox._DeliveryBatch) for c in callbacks) == 1
    assert len(next(c for c in callbacks if isinstance(c, outbox._DeliveryBatch)).ids) == 4
    assert client.llen(settings.NOTIFICATIONS_QUEUE) == before + 1
    queued = client.lindex(settings.NOTIFICATIONS_QUEUE, 0).decode()
    assert "notifications.tasks.deliver_notifications_task" in queued


def test_the_notifications_queue_is_consumed_by_a_default_worker():
    assert {"celery", settings.NOTIFICATIONS_QUEUE} <= set(celery_app.amqp.queues)
    route = celery_app.amqp.router.route({}, "notifications.tasks.deliver_notifications_task")
    assert route["queue"].name == settings.NOTIFICATIONS_QUEUE


# --- Delivery, retries, failures ---------------------------------------------------------------------


def test_delivery_records_the_outcome_and_sends_once(webhook_channel, make_rule, receiver, clock):
    alert = fire(make_rule(channels=[webhook_channel()]), T0)
    row = Notification.objects.get()
    stats = outbox.deliver_notifications([row.pk], clock=clock)
    assert stats.sent == 1
    outbox.deliver_notifications([row.pk], clock=clock)  # a redelivered task
    outbox.sweep_outbox(clock=clock)

    (request,) = receiver.requests
    assert request.headers["idempotency-key"] == row.idempotency_key
    assert request.json()["alerts"][0]["id"] == alert.pk
    assert request.json()["alerts"][0]["url"] == f"{settings.MONITORING_PUBLIC_URL}/alerts/{alert.pk}/"
    row.refresh_from_db()
    assert (row.status, row.attempts, row.sent_at, row.claim_token) == ("sent", 1, T0, "")


def test_transient_errors_back_off_then_fail_after_max_retries(
    webhook_channel, make_channel, make_rule, receiver, clock
):
    GlobalSettings.objects.update_or_create(pk=1, defaults={"max_retries": 3})
    receiver.default = Reply(503, "maintenance")
    alert = fire(make_rule(channels=[webhook_channel()]), T0)
    row = Notification.objects.get()
    retry_times = []
    for _ in range(4):
        row.refresh_from_db()
        clock.current = row.next_attempt_at
        outbox.sweep_outbox(clock=clock)
        row.refresh_from_db()
        retry_times.append((row.next_attempt_at - clock.now()).total_seconds())
    assert len(receiver.requests) == 4
    assert row.status == NotificationStatus.FAILED and not row.permanent_failure
    assert row.last_error == "gave up after 4 attempts: HTTP 503: maintenance"
    # 30 s, 90 s, 270 s, each within the +-25 % jitter.
    for delay, base in zip(retry_times[:3], (30, 90, 270), strict=True):
        assert base * 0.75 <= delay <= base * 1.25
    assert alert.pk == row.alert_id


def test_permanent_error_is_not_retried_and_raises_channel_failing_to_other_channels(
    webhook_channel, make_channel, make_rule, receiver, clock
):
    receiver.default = Reply(410, "gone")
    broken = webhook_channel("broken")
    make_channel("webhook", "backup", url=f"{receiver.url}/backup", timeout=2)
    fire(make_rule(channels=[broken]), T0)
    outbox.sweep_outbox(clock=clock)
    clock.advance(3600)
    outbox.sweep_outbox(clock=clock)

    row = Notification.objects.get(channel=broken)
    assert (row.status, row.permanent_failure, row.attempts) == ("failed", True, 1)
    assert row.last_error == "HTTP 410: gone"
    assert len(receiver.requests) == 1
    broken.refresh_from_db()
    assert broken.failing_since == T0 and broken.last_error == "HTTP 410: gone"
    assert series_value(outbox.CHANNEL_FAILING_METRIC, channel="broken") == 1.0

    # The internal rule fires on the gauge, and tells the other channels only.
    receiver.default = Reply(200)
    evaluate_rules(now=clock.now())
    internal = Alert.objects.get(rule__key=outbox.CHANNEL_FAILING_RULE)
    assert internal.labels["channel"] == "broken" and internal.state == AlertState.ACTIVE
    assert list(Notification.objects.filter(alert=internal).values_list("channel__key", flat=True)) == ["backup"]
    outbox.sweep_outbox(clock=clock)
    assert receiver.requests[-1].path == "/backup"
    assert receiver.requests[-1].json()["alerts"][0]["rule"] == outbox.CHANNEL_FAILING_RULE


def test_a_channel_recovering_clears_its_failing_state(webhook_channel, make_rule, receiver, clock):
    hook = webhook_channel()
    rule = make_rule(channels=[hook])
    receiver.default = Reply(404, "no such hook")
    fire(rule, T0, {"host": "a"})
    outbox.sweep_outbox(clock=clock)
    receiver.default = Reply(200)
    later = clock.advance(60)
    fire(rule, later, {"host": "b"})
    outbox.sweep_outbox(clock=clock)
    hook.refresh_from_db()
    assert hook.failing_since is None and hook.last_error == ""
    assert series_value(outbox.CHANNEL_FAILING_METRIC, channel="webhook") == 0.0


def test_a_failure_then_a_success_in_one_sweep_leaves_the_channel_healthy(webhook_channel, make_rule, receiver, clock):
    hook = webhook_channel()
    rule = make_rule(channels=[hook])
    receiver.script.extend([Reply(400, "bad payload"), Reply(200)])
    fire(rule, T0, {"host": "a"})
    fire(rule, T0, {"host": "b"})
    outbox.sweep_outbox(clock=clock)
    assert statuses() == {"failed": 1, "sent": 1}
    hook.refresh_from_db()
    assert hook.failing_since is None


def test_a_transient_failure_pauses_the_channel_without_using_up_other_rows_retries(
    webhook_channel, make_rule, receiver, clock
):
    receiver.default = Reply(503, "down")
    rule = make_rule(channels=[webhook_channel()])
    for i in range(5):
        fire(rule, T0, {"host": f"h{i}"})
    outbox.sweep_outbox(clock=clock)
    assert len(receiver.requests) == 1  # one probe, not five requests to a receiver that is down
    attempts = sorted(Notification.objects.values_list("attempts", flat=True))
    assert attempts == [0, 0, 0, 0, 1] and statuses() == {"pending": 5}
    probe = Notification.objects.get(attempts=1)
    assert set(Notification.objects.values_list("next_attempt_at", flat=True)) == {probe.next_attempt_at}


def test_a_sweep_stops_sending_at_its_budget_and_leaves_the_rest_untried(webhook_channel, make_rule, receiver, clock):
    def slow(request):
        clock.advance(20)  # each send takes 20 s of the sweep's time
        return Reply(200)

    receiver.respond = slow
    rule = make_rule(channels=[webhook_channel()])
    for i in range(10):
        fire(rule, T0, {"host": f"h{i}"})
    outbox.sweep_outbox(clock=clock, budget_s=60)
    assert len(receiver.requests) == 3
    assert statuses() == {"sent": 3, "pending": 7}
    assert set(Notification.objects.filter(status="pending").values_list("attempts", flat=True)) == {0}
    outbox.sweep_outbox(clock=clock, budget_s=600)
    assert statuses() == {"sent": 10} and len(receiver.requests) == 10


def test_retry_after_is_honoured_and_does_not_use_up_retries(webhook_channel, make_rule, receiver, clock):
    GlobalSettings.objects.update_or_create(pk=1, defaults={"max_retries": 0})
    receiver.script.append(Reply(429, "slow down", {"Retry-After": "120"}))
    fire(make_rule(channels=[webhook_channel()]), T0)
    outbox.sweep_outbox(clock=clock)
    row = Notification.objects.get()
    assert row.status == NotificationStatus.PENDING and row.next_attempt_at == T0 + timedelta(seconds=120)

    clock.current = T0 + timedelta(seconds=100)
    outbox.sweep_outbox(clock=clock)
    assert len(receiver.requests) == 1
    clock.current = T0 + timedelta(seconds=118)
    outbox.sweep_outbox(clock=clock)  # waits the last two seconds, then sends
    row.refresh_from_db()
    assert (row.status, row.attempts, len(receiver.requests)) == ("sent", 2, 2)
    assert receiver.requests[1].at == T0 + timedelta(seconds=120)


def test_receiver_down_for_a_while_then_back_gets_everything_once(webhook_channel, make_rule, receiver, clock):
    rule = make_rule(channels=[webhook_channel()])
    for i in range(20):
        fire(rule, T0, {"host": f"h{i}"})
    receiver.stop()
    for _ in range(6):  # about ten minutes of sweeps every 15 s would do the same
        outbox.sweep_outbox(clock=clock)
        clock.advance(60)
    assert statuses() == {"pending": 20}
    receiver.start()
    for _ in range(30):
        if not Notification.objects.exclude(status=NotificationStatus.SENT).exists():
            break
        clock.advance(60)
        outbox.sweep_outbox(clock=clock)
    assert statuses() == {"sent": 20}
    keys = Counter(r.headers["idempotency-key"] for r in receiver.requests)
    assert set(keys) == set(Notification.objects.values_list("idempotency_key", flat=True))
    assert max(keys.values()) == 1


def test_resolved_never_overtakes_its_firing(webhook_channel, make_rule, receiver, clock):
    rule = make_rule(channels=[webhook_channel()])
    receiver.stop()
    alert = fire(rule, T0)
    outbox.sweep_outbox(clock=clock)  # the firing fails and waits for its retry
    resolve_alert(alert_id=alert.pk, user=None, source=AuditSource.SYSTEM, now=T0)
    receiver.start()
    outbox.sweep_outbox(clock=clock)
    assert receiver.requests == []  # the resolved waits for the firing
    clock.advance(3600)
    outbox.sweep_outbox(clock=clock)
    assert [r.json()["event"] for r in receiver.requests] == ["firing", "resolved"]


# --- Crashes, lost messages, concurrency ------------------------------------------------------------------


def subprocess_env(db_file) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONUNBUFFERED": "1"}
    if db_file is not None:
        env["DATABASE_URL"] = f"sqlite:///{db_file}"
    else:
        db = connection.settings_dict
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    if not settings.EMBEDDED_REDIS:
        env["REDIS_URL"] = settings.REDIS_URL
    return env


DELIVER = "import sys, django; django.setup(); from notifications.outbox import deliver_notifications; " \
    "deliver_notifications([int(sys.argv[1])])"  # fmt: skip


def test_a_worker_killed_mid_send_is_resent_after_its_lease(shared_db, webhook_channel, make_rule, receiver, clock):
    hook = webhook_channel(timeout=30)
    fire(make_rule(channels=[hook]), T0)
    row = Notification.objects.get()
    receiver.script.append(Reply(hang=True))
    worker = subprocess.Popen(
        [sys.executable, "-c", DELIVER, str(row.pk)], env=subprocess_env(shared_db), cwd=settings.BASE_DIR
    )
    try:
        assert receiver.arrived.wait(timeout=60), "the worker never sent"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    row.refresh_from_db()
    assert (row.status, row.attempts) == (NotificationStatus.SENDING, 1)

    clock.current = row.lease_expires_at - timedelta(seconds=1)
    outbox.sweep_outbox(clock=clock)
    assert len(receiver.requests) == 1  # the lease still holds
    clock.current = row.lease_expires_at + timedelta(seconds=1)
    outbox.sweep_outbox(clock=clock)

    row.refresh_from_db()
    assert (row.status, row.attempts) == (NotificationStatus.SENT, 2)
    assert [r.headers["idempotency-key"] for r in receiver.requests] == [row.idempotency_key] * 2
    assert receiver.answered(200) == receiver.requests[1:]


@pytest.fixture
def dead_broker():
    """Celery publishing to a port nobody listens on, as when Redis is down."""
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    saved = celery_app.conf.broker_url
    celery_app.conf.broker_url = f"redis://127.0.0.1:{port}/0"
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    yield
    celery_app.conf.broker_url = saved
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def test_broker_unreachable_at_commit_then_the_sweeper_delivers(
    dead_broker, webhook_channel, make_rule, receiver, clock, django_capture_on_commit_callbacks
):
    rule = make_rule(channels=[webhook_channel()])
    with django_capture_on_commit_callbacks(execute=True):
        alert = fire(rule, T0)  # the transition commits; handing the row to a worker fails
    assert Alert.objects.get(pk=alert.pk).state == AlertState.ACTIVE
    assert statuses() == {"pending": 1} and receiver.requests == []
    outbox.sweep_outbox(clock=clock)
    assert statuses() == {"sent": 1} and len(receiver.requests) == 1


@pytest.mark.parametrize("sweepers", [4])
def test_sweepers_at_once_send_each_notification_once(shared_db, webhook_channel, make_rule, receiver, sweepers):
    rule = make_rule(channels=[webhook_channel(), webhook_channel("second")])
    for i in range(40):
        fire(rule, T0, {"host": f"h{i}"})
    barrier = threading.Barrier(sweepers)
    errors = []

    def sweep() -> None:
        try:
            barrier.wait(timeout=30)
            outbox.sweep_outbox(clock=FakeClock(T0), limit=7)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(sweepers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    keys = Counter(r.headers["idempotency-key"] for r in receiver.requests)
    assert len(keys) == 80 and max(keys.values()) == 1
    assert statuses() == {"sent": 80}


# --- Held back --------------------------------------------------------------------------------------------


def test_silenced_alert_is_suppressed_with_the_reason_and_notified_when_the_silence_ends(
    webhook_channel, make_rule, receiver, clock
):
    make_rule(channels=[webhook_channel()], duration=0)
    silence = create_silence(
        user=None,
        matchers=[{"name": "host", "op": "=", "value": "gw-1"}],
        ends_at=T0 + timedelta(hours=1),
        starts_at=T0 - timedelta(minutes=1),
        source=AuditSource.SYSTEM,
        now=T0,
    )
    ingest_samples([SampleIn("cpu_usage_percent", {"host": "gw-1"}, 99.0, T0.timestamp())], now=T0)
    evaluate_rules(now=T0)
    row = Notification.objects.get()
    assert row.status == NotificationStatus.SUPPRESSED
    assert row.suppressed_reason == f"silenced by silence {silence.pk}"
    outbox.sweep_outbox(clock=clock)
    assert receiver.requests == []

    # The alert still fires when the silence ends: the escalation sweep notices and sends.
    later = T0 + timedelta(hours=1, seconds=5)
    ingest_samples([SampleIn("cpu_usage_percent", {"host": "gw-1"}, 99.0, later.timestamp())], now=later)
    summary = sweep_escalations(now=later)
    assert summary.released == 1
    clock.current = later
    outbox.sweep_outbox(clock=clock)
    row.refresh_from_db()
    assert row.status == NotificationStatus.SENT and row.suppressed_reason == ""
    assert receiver.requests[0].json()["event"] == "firing"


def test_suppressed_by_a_parent_target_is_held_with_the_reason(webhook_channel, make_rule, receiver, clock):
    rule = make_rule(channels=[webhook_channel()])
    parent = fire(make_rule("gateway_down"), T0, {"target": "gw"})
    with transaction.atomic():
        child = Alert.objects.create(
            rule=rule, fingerprint="child", labels={"target": "sensor"}, severity="high", state=AlertState.ACTIVE,
            fired_at=T0, suppressed_by=parent,
        )  # fmt: skip
        record_event(alert=child, from_state="", to_state=AlertState.ACTIVE, at=T0)
    row = Notification.objects.get(alert=child)
    assert row.status == NotificationStatus.SUPPRESSED
    assert row.suppressed_reason == f"suppressed: alert {parent.pk} of a parent target is firing"
    outbox.sweep_outbox(clock=clock)
    assert receiver.requests == []


def test_a_silence_starting_after_queueing_holds_the_firing_back(webhook_channel, make_rule, receiver, clock):
    alert = fire(make_rule(channels=[webhook_channel()]), T0)
    Alert.objects.filter(pk=alert.pk).update(silenced=True)
    outbox.sweep_outbox(clock=clock)
    assert receiver.requests == []
    assert Notification.objects.get().status == NotificationStatus.SUPPRESSED


def test_a_channel_told_it_fired_hears_it_resolved_even_while_silenced(webhook_channel, make_rule, receiver, clock):
    hook, quiet = webhook_channel(), webhook_channel("quiet")
    rule = make_rule(channels=[hook])
    alert = fire(rule, T0)
    outbox.sweep_outbox(clock=clock)
    rule.channels.add(quiet)  # added later: never told the alert fired
    Alert.objects.filter(pk=alert.pk).update(silenced=True)
    resolve_alert(alert_id=alert.pk, user=None, source=AuditSource.SYSTEM, now=clock.advance(300))
    resolved = dict(Notification.objects.filter(event="resolved").values_list("channel__key", "status"))
    assert resolved == {"webhook": "pending", "quiet": "suppressed"}
    outbox.sweep_outbox(clock=clock)
    assert [r.json()["event"] for r in receiver.requests] == ["firing", "resolved"]


# --- Metrics -----------------------------------------------------------------------------------------------


def test_the_sweep_pushes_notification_metrics(webhook_channel, make_rule, receiver, clock):
    rule = make_rule(channels=[webhook_channel()])
    for i in range(3):
        fire(rule, T0, {"host": f"h{i}"})
    receiver.script.append(Reply(404))
    outbox.sweep_outbox(clock=clock)
    fire(rule, T0, {"host": "late"})
    outbox.push_notification_metrics(now=clock.advance(15))

    assert series_value(outbox.NOTIFICATIONS_METRIC, channel="webhook", status="sent") == 2
    assert series_value(outbox.NOTIFICATIONS_METRIC, channel="webhook", status="failed") == 1
    assert series_value(outbox.NOTIFICATIONS_METRIC, channel="webhook", status="suppressed") == 0
    assert series_value(outbox.PENDING_METRIC) == 1


def test_channel_failing_alert_never_goes_to_the_failing_channel(make_channel, clock):
    email = make_channel("email", smtp_server="127.0.0.1", from_email="a@example.com", recipients=["b@example.com"])
    slack = make_channel("slack", webhook_url="http://127.0.0.1:9/hook")
    outbox.ensure_channel_failing_rule()
    rule = AlertRule.objects.get(key=outbox.CHANNEL_FAILING_RULE)
    alert = fire(rule, T0, {"channel": "slack"})
    assert set(Notification.objects.filter(alert=alert).values_list("channel", flat=True)) == {email.pk}
    assert NotificationChannel.objects.filter(pk=slack.pk).exists()


# --- Celery shells ------------------------------------------------------------------------------------------


def test_tasks_deliver_and_sweep_and_are_on_the_beat_schedule(webhook_channel, make_rule, receiver):
    from monitoring.schedule import PERIODIC_JOBS, is_task_registered
    from notifications.tasks import deliver_notifications_task, sweep_escalations_task, sweep_outbox_task

    fire(make_rule(channels=[webhook_channel()]), T0)
    row = Notification.objects.get()
    assert deliver_notifications_task.run([row.pk]).startswith("1 message(s): 1 sent")
    assert sweep_outbox_task.run().startswith("0 message(s)")
    assert "escalation step(s) due" in sweep_escalations_task.run()
    assert len(receiver.requests) == 1
    for job in PERIODIC_JOBS:
        if job.task.startswith("notifications."):
            assert is_task_registered(job.task)
