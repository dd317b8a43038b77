"""The health check services on the database: results, streaks, metrics, claims and
dispatch, on-demand runs, live updates, and a `service_up < 1` rule firing end to end."""

import base64
import datetime as dt
import json
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import override_settings
from django.utils import timezone

from healthchecks.checkers import CheckOutcome
from healthchecks.choices import HealthStatus
from healthchecks.models import HealthCheck, HealthCheckResult
from healthchecks.services import (
    dispatch_due_checks,
    record_outcomes,
    run_checks_now,
    run_claimed_checks,
)
from healthchecks.tasks import run_checks_task
from monitoring.ingest import normalize_labels, series_fingerprint
from monitoring.models import MonitoringTarget, Sample, Series
from monitoring.redis import redis_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def target(db) -> MonitoringTarget:
    return MonitoringTarget.objects.create(name="Device Service", slug="device_service", endpoint="")


@pytest.fixture
def make_check(target):
    def make(key: str = "svc", kind: str = "http", config: dict | None = None, **fields) -> HealthCheck:
        fields.setdefault("target", target)
        return HealthCheck.objects.create(name=key, key=key, kind=kind, config=config or {}, **fields)

    return make


@pytest.fixture
def task_queue():
    """A queue of its own for the tasks a test sends, read back as (task, kwargs) and removed."""
    name = f"test-healthchecks-{uuid.uuid4().hex[:8]}"
    client = redis_client()

    def sent() -> list[tuple[str, dict, str]]:
        messages = [json.loads(raw) for raw in client.lrange(name, 0, -1)]
        found = []
        for message in reversed(messages):  # kombu pushes on the left
            _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found.append((message["headers"]["task"], kwargs, message["headers"]["id"]))
        return found

    with override_settings(HEALTHCHECK_QUEUE=name):
        yield sent
    client.delete(name)


def outcome(check: HealthCheck, status: HealthStatus, at: dt.datetime, **extra) -> CheckOutcome:
    return CheckOutcome(
        check_id=check.pk,
        status=status,
        message=extra.pop("message", status.value),
        response_time=extra.pop("response_time", 0.25),
        details=extra.pop("details", {}),
        checked_at=at,
    )


def series_values(metric: str, **labels) -> list[float]:
    series = Series.objects.get(fingerprint=series_fingerprint(metric, normalize_labels(labels)))
    return [s.value for s in Sample.objects.filter(series=series).order_by("ts")]


# --- recording ----------------------------------------------------------------------------------


def test_results_are_stored_and_ingested_as_metrics(make_check):
    check = make_check()
    at = timezone.now()
    [result] = record_outcomes(
        outcomes=[outcome(check, HealthStatus.HEALTHY, at, details={"status_code": 200}, response_time=0.125)]
    )
    check.refresh_from_db()
    assert check.status == HealthStatus.HEALTHY
    assert check.last_result_id == result.pk and check.last_checked_at == at
    assert check.next_due_at == at + dt.timedelta(seconds=check.interval)
    assert HealthCheckResult.objects.get(pk=result.pk).details == {"status_code": 200}
    assert series_values("service_up", target="device_service", check="svc") == [1.0]
    assert series_values("service_response_time_seconds", target="device_service", check="svc") == [0.125]
    assert series_values("http_response_status_code", target="device_service", check="svc") == [200.0]


def test_kind_specific_metrics(make_check):
    tls = make_check("cert", kind="tls_certificate")
    ping = make_check("net", kind="ping", target=None)
    at = timezone.now()
    record_outcomes(
        outcomes=[
            outcome(tls, HealthStatus.CRITICAL, at, details={"expiry_days": 4.5}),
            outcome(ping, HealthStatus.WARNING, at, details={"packet_loss_ratio": 0.3333}),
        ]
    )
    assert series_values("tls_certificate_expiry_days", target="device_service", check="cert") == [4.5]
    assert series_values("service_up", target="device_service", check="cert") == [0.0]
    # A check without a target has no target label (an empty label is no label).
    assert series_values("ping_packet_loss_ratio", check="net") == [0.3333]
    assert series_values("service_up", check="net") == [1.0]


def test_check_goes_down_after_failure_threshold_and_up_after_success_threshold(make_check):
    check = make_check(failure_threshold=3, success_threshold=2, status=HealthStatus.HEALTHY)
    start = timezone.now()
    statuses = []
    sequence = [HealthStatus.CRITICAL] * 3 + [HealthStatus.HEALTHY] * 2
    for i, status in enumerate(sequence):
        # A fresh row each time: the streaks live in the database, so a restart keeps them.
        fresh = HealthCheck.objects.get(pk=check.pk)
        record_outcomes(outcomes=[outcome(fresh, status, start + dt.timedelta(seconds=i))])
        fresh.refresh_from_db()
        statuses.append((fresh.status, fresh.consecutive_failures, fresh.consecutive_successes))
    assert statuses == [
        (HealthStatus.HEALTHY, 1, 0),
        (HealthStatus.HEALTHY, 2, 0),
        (HealthStatus.CRITICAL, 3, 0),
        (HealthStatus.CRITICAL, 0, 1),
        (HealthStatus.HEALTHY, 0, 2),
    ]
    # service_up follows the state after the thresholds, not each probe.
    assert series_values("service_up", target="device_service", check="svc") == [1.0, 1.0, 0.0, 0.0, 1.0]


def test_state_change_is_published_to_the_health_group(make_check, django_capture_on_commit_callbacks):
    check = make_check()
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("health", channel)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            record_outcomes(outcomes=[outcome(check, HealthStatus.CRITICAL, timezone.now(), message="HTTP 500")])
        message = async_to_sync(layer.receive)(channel)
    finally:
        async_to_sync(layer.group_discard)("health", channel)
    assert message["event"] == "health.state_changed"
    [change] = message["payload"]["changes"]
    assert change["check_id"] == check.pk and change["key"] == "svc" and change["target"] == "device_service"
    assert change["previous_status"] == "unknown" and change["status"] == "critical"
    assert change["message"] == "HTTP 500"


def test_no_publish_without_a_state_change(make_check, django_capture_on_commit_callbacks):
    check = make_check(status=HealthStatus.HEALTHY)
    with django_capture_on_commit_callbacks() as callbacks:
        record_outcomes(outcomes=[outcome(check, HealthStatus.HEALTHY, timezone.now())])
    assert not [c for c in callbacks if getattr(c, "func", None).__name__ == "publish_state_changes"]


# --- claims, dispatch, no double runs ---------------------------------------------------------------


def test_dispatch_claims_due_checks_once_and_queues_batches(make_check, task_queue, http_server):
    url = f"{http_server.base_url}/ok"
    due = [make_check(f"due-{i}", config={"url": url}) for i in range(5)]
    later = make_check("later", config={"url": url}, next_due_at=timezone.now() + dt.timedelta(minutes=5))
    make_check("off", config={"url": url}, enabled=False)
    now = timezone.now()
    with override_settings(HEALTHCHECK_BATCH_SIZE=2):
        summary = dispatch_due_checks(now=now)
        again = dispatch_due_checks(now=now + dt.timedelta(seconds=10))
    assert (summary.claimed, summary.tasks) == (5, 3)
    assert again.claimed == 0  # a claimed check is not due for the next tick
    sent = task_queue()
    assert [name for name, _, _ in sent] == ["healthchecks.tasks.run_checks_task"] * 3
    assert sorted(i for _, kwargs, _ in sent for i in kwargs["check_ids"]) == sorted(c.pk for c in due)
    assert later.pk not in {i for _, kwargs, _ in sent for i in kwargs["check_ids"]}

    # The worker side: each batch runs once; a redelivered message runs nothing.
    for _, kwargs, _ in sent:
        run_checks_task(**kwargs)
    for _, kwargs, _ in sent:
        assert run_checks_task(**kwargs) == f"ran 0 of {len(kwargs['check_ids'])} check(s), 0 critical"
    assert HealthCheckResult.objects.count() == 5
    assert set(HealthCheck.objects.filter(pk__in=[c.pk for c in due]).values_list("status", flat=True)) == {"healthy"}
    assert not HealthCheck.objects.filter(running_since__isnull=False).exists()


def test_a_stale_claim_is_taken_over(make_check, task_queue, http_server):
    check = make_check(config={"url": f"{http_server.base_url}/ok"})
    now = timezone.now()
    first = dispatch_due_checks(now=now)
    assert first.claimed == 1
    with override_settings(HEALTHCHECK_CLAIM_TIMEOUT=60):
        assert dispatch_due_checks(now=now + dt.timedelta(seconds=59)).claimed == 0
        assert dispatch_due_checks(now=now + dt.timedelta(seconds=61)).claimed == 1
    [(_, stale, _), (_, fresh, _)] = task_queue()
    run_checks_task(**stale)  # the first worker's message, arriving after the takeover: nothing
    assert HealthCheckResult.objects.filter(health_check=check).count() == 0
    run_checks_task(**fresh)
    assert HealthCheckResult.objects.filter(health_check=check).count() == 1


def test_run_claimed_checks_ignores_ids_outside_the_claim(make_check, http_server):
    check = make_check(config={"url": f"{http_server.base_url}/ok"})
    assert run_claimed_checks(claim_token=uuid.uuid4(), check_ids=[check.pk]) == []
    assert HealthCheckResult.objects.count() == 0


# --- on-demand runs ----------------------------------------------------------------------------------


def test_run_now_returns_results_of_checks_that_fit_and_task_ids_of_the_rest(make_check, task_queue, http_server):
    quick = make_check("quick", config={"url": f"{http_server.base_url}/ok"}, timeout=5)
    slow = make_check("slow", config={"url": f"{http_server.base_url}/ok"}, timeout=60)
    off = make_check("off", config={"url": f"{http_server.base_url}/ok"}, enabled=False)
    busy = make_check("busy", config={"url": f"{http_server.base_url}/ok"}, running_since=timezone.now())
    report = run_checks_now(check_ids=[quick.pk, slow.pk, off.pk, busy.pk, 999999], wait_seconds=10)
    assert [(r.health_check_id, r.status) for r in report.results] == [(quick.pk, "healthy")]
    assert [q.check_ids for q in report.queued] == [(slow.pk,)]
    assert report.skipped == {off.pk: "disabled", busy.pk: "already running", 999999: "no such check"}
    [(_, kwargs, task_id)] = task_queue()
    assert task_id == report.queued[0].task_id and kwargs["check_ids"] == [slow.pk]
    quick.refresh_from_db()
    assert quick.running_since is None and quick.status == "healthy"


# --- end to end: a down target fires `service_up < 1` ------------------------------------------------


def test_down_target_fires_the_service_up_rule(make_check, closed_port):
    from alerts.evaluation import evaluate_rules
    from alerts.models import Alert, AlertRule

    rule = AlertRule.objects.create(
        key="service_down", name="Service Down", metric="service_up", comparison="<", threshold=1, duration=0
    )
    make_check("database_health", kind="tcp", config={"host": "127.0.0.1", "port": closed_port})
    report = run_checks_now(check_ids=None)
    assert [r.status for r in report.results] == ["critical"]
    assert series_values("service_up", target="device_service", check="database_health") == [0.0]
    evaluate_rules([rule.pk], now=timezone.now(), only_due=False)
    alert = Alert.objects.get(rule=rule)
    assert alert.state == "active"
    assert alert.labels["check"] == "database_health" and alert.labels["target"] == "device_service"
