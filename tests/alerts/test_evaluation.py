"""The evaluation service on the database, and the on-ingest trigger that schedules it."""

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from alerts import triggers
from alerts.choices import AlertState
from alerts.evaluation import evaluate_rules
from alerts.lifecycle import resolve_alert
from alerts.models import Alert, AlertEvent, AlertRule, Silence
from alerts.tasks import evaluate_rules_task
from config.celery import app as celery_app
from monitoring.choices import AuditSource
from monitoring.exposition import render_exposition
from monitoring.ingest import SampleIn, ingest_samples
from monitoring.instant import epoch_ms, instant_vector, instant_vectors
from monitoring.models import MonitoringTarget
from monitoring.redis import redis_client


def make_rule(key: str = "cpu-high", **fields: object) -> AlertRule:
    defaults = {"name": key, "metric": "cpu_usage_percent", "comparison": ">", "threshold": 80.0, "duration": 0}
    return AlertRule.objects.create(key=key, **(defaults | fields))


def store_samples(metric: str, labels: Mapping[str, str], points: Sequence[tuple[datetime, float]]) -> None:
    """Store samples of one series through the ingestion path."""
    result = ingest_samples(
        [SampleIn(metric, labels, value, at.timestamp()) for at, value in points],
        now=max(at for at, _ in points),
    )
    assert result.accepted == len(points), result.rejected


@pytest.mark.django_db
def test_rules_watching_lists_enabled_rules_of_the_changed_metrics() -> None:
    cpu = make_rule("cpu")
    disk = make_rule("disk", metric="disk_usage_percent")
    make_rule("cpu-off", enabled=False)
    make_rule("other", metric="memory_usage_percent")

    assert triggers.rules_watching({"cpu_usage_percent", "disk_usage_percent", "unwatched"}) == sorted(
        [cpu.id, disk.id]
    )


@pytest.mark.django_db
def test_promql_rules_watch_the_metrics_their_selectors_select() -> None:
    # A PromQL rule's `metric` is not what it reads: its expression's selectors are.
    ratio = make_rule("ratio", metric="", expr="sum(errors_total) / sum(rate(requests_total[5m])) > 0.1")
    by_name = make_rule("by-name", metric="", expr='{__name__=~"disk_.*_percent", env="prod"} > 90')
    make_rule("broken", metric="", expr="up ==")  # not evaluable: watches nothing, raises nothing
    make_rule("promql-off", metric="", expr="errors_total > 0", enabled=False)
    triggers.forget_watched_metrics()

    assert triggers.rules_watching({"errors_total"}) == [ratio.id]
    assert triggers.rules_watching({"requests_total", "unwatched"}) == [ratio.id]
    assert triggers.rules_watching({"disk_used_percent"}) == [by_name.id]
    assert triggers.rules_watching({"disk_used_bytes", "up"}) == []

    ratio.expr = "avg(memory_usage_percent) > 80"
    ratio.save()  # saving a rule drops the map at once
    assert triggers.rules_watching({"errors_total"}) == []
    assert triggers.rules_watching({"memory_usage_percent"}) == [ratio.id]


def test_one_evaluation_slot_per_rule_per_second() -> None:
    slot = 2_000_000_000 + id(object()) % 1000  # a second no other test claims
    assert triggers.claim_evaluation_slots([1, 2], slot) == [1, 2]
    assert triggers.claim_evaluation_slots([1, 2, 3], slot) == [3]
    assert triggers.claim_evaluation_slots([1], slot + 1) == [1]


@pytest.mark.django_db
def test_batches_in_one_second_queue_one_evaluation() -> None:
    rule = make_rule("cpu")
    queue = redis_client()
    before = queue.llen("celery")
    try:
        for _ in range(5):
            triggers.on_metrics_changed(frozenset({"cpu_usage_percent"}))
        queued = queue.llen("celery") - before
    finally:
        queue.delete("celery")
    # Five batches within the same second (or straddling one boundary) queue at most two
    # evaluations of the rule, never five.
    assert 1 <= queued <= 2
    assert rule.id in triggers.rules_watching({"cpu_usage_percent"})


@pytest.mark.django_db
def test_trigger_does_not_raise_when_redis_is_away(caplog: pytest.LogCaptureFixture) -> None:
    make_rule("cpu")
    redis_client.cache_clear()
    try:
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
            triggers.on_metrics_changed(frozenset({"cpu_usage_percent"}))
    finally:
        redis_client.cache_clear()
    assert "Redis unavailable" in caplog.text


# --- The evaluation service -----------------------------------------------------------------


@pytest.fixture
def t0() -> datetime:
    return timezone.now().replace(microsecond=0)


def events_of(alert: Alert) -> list[tuple[str, str, datetime, float | None]]:
    return [(e.from_state, e.to_state, e.at, e.value) for e in alert.events.order_by("at", "id")]


@pytest.mark.django_db
def test_pending_alert_fires_after_duration_then_resolves_with_events(t0: datetime) -> None:
    rule = make_rule("cpu", duration=60, severity="high", labels={"team": "iot"})
    values = {0: 85.0, 30: 90.0, 60: 95.0, 90: 50.0}
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(t0 + timedelta(seconds=s), v) for s, v in values.items()])

    summaries = [evaluate_rules(now=t0 + timedelta(seconds=s)) for s in values]

    alert = Alert.objects.get()
    assert alert.state == AlertState.RESOLVED
    assert alert.labels == {"host": "gw-1", "team": "iot", "severity": "high"}
    assert (alert.pending_since, alert.fired_at, alert.resolved_at) == (
        t0,
        t0 + timedelta(seconds=60),
        t0 + timedelta(seconds=90),
    )
    assert events_of(alert) == [
        ("", "pending", t0, 85.0),
        ("pending", "active", t0 + timedelta(seconds=60), 95.0),
        ("active", "resolved", t0 + timedelta(seconds=90), 50.0),
    ]
    assert all(e.actor_name == "engine" for e in alert.events.all())
    assert [s.transitions for s in summaries] == [{"pending": 1}, {}, {"active": 1}, {"resolved": 1}]
    rule.refresh_from_db()
    assert rule.last_evaluated_at == t0 + timedelta(seconds=90)


@pytest.mark.django_db
def test_open_alert_value_follows_the_series_without_events(t0: datetime) -> None:
    make_rule("cpu", duration=300)
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(t0, 85.0), (t0 + timedelta(seconds=30), 97.5)])
    evaluate_rules(now=t0)
    evaluate_rules(now=t0 + timedelta(seconds=30))
    alert = Alert.objects.get()
    assert (alert.state, alert.value, alert.last_true_at) == (AlertState.PENDING, 97.5, t0 + timedelta(seconds=30))
    assert len(events_of(alert)) == 1


@pytest.mark.django_db
def test_pending_alert_dropped_as_inactive_when_condition_clears(t0: datetime) -> None:
    make_rule("cpu", duration=300)
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(t0, 85.0), (t0 + timedelta(seconds=60), 20.0)])
    evaluate_rules(now=t0)
    evaluate_rules(now=t0 + timedelta(seconds=60))
    alert = Alert.objects.get()
    assert alert.state == AlertState.INACTIVE
    assert [e[:2] for e in events_of(alert)] == [("", "pending"), ("pending", "inactive")]


@pytest.mark.django_db
def test_manually_resolved_alert_still_true_starts_a_new_pending_alert(t0: datetime, users: dict) -> None:
    rule = make_rule("cpu", duration=60)
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(t0 + timedelta(seconds=s), 95.0) for s in (0, 60, 120)])
    evaluate_rules(now=t0)
    evaluate_rules(now=t0 + timedelta(seconds=60))
    first = Alert.objects.get()
    assert first.state == AlertState.ACTIVE

    resolve_alert(alert_id=first.id, user=users["operator"], source=AuditSource.API, now=t0 + timedelta(seconds=90))
    evaluate_rules(now=t0 + timedelta(seconds=120))

    first.refresh_from_db()
    assert first.state == AlertState.RESOLVED and first.resolved_by == users["operator"]
    second = Alert.objects.exclude(pk=first.pk).get()
    assert (second.rule, second.fingerprint, second.state) == (rule, first.fingerprint, AlertState.PENDING)
    assert second.pending_since == t0 + timedelta(seconds=120)
    assert events_of(second) == [("", "pending", t0 + timedelta(seconds=120), 95.0)]


@pytest.mark.django_db
def test_absent_series_resolves_firing_alert(t0: datetime) -> None:
    make_rule("cpu")
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(t0, 95.0)])
    evaluate_rules(now=t0)
    evaluate_rules(now=t0 + timedelta(seconds=300))  # the sample is exactly at the lookback's edge
    assert Alert.objects.get().state == AlertState.ACTIVE
    evaluate_rules(now=t0 + timedelta(seconds=301))
    alert = Alert.objects.get()
    assert alert.state == AlertState.RESOLVED
    assert events_of(alert)[-1] == ("active", "resolved", t0 + timedelta(seconds=301), None)


@pytest.mark.django_db
def test_one_alert_per_series_matching_the_rule(t0: datetime) -> None:
    rule = make_rule("up", metric="service_up", comparison="<", threshold=1, matchers={"env": "prod"})
    for target, env, value in [("api", "prod", 0), ("db", "prod", 0), ("web", "prod", 1), ("dev-api", "dev", 0)]:
        store_samples("service_up", {"target": target, "env": env}, [(t0, float(value))])
    store_samples("other_metric", {"target": "api", "env": "prod"}, [(t0, 0.0)])
    evaluate_rules(now=t0)
    assert sorted(a.labels["target"] for a in Alert.objects.filter(rule=rule, state=AlertState.ACTIVE)) == [
        "api",
        "db",
    ]


@pytest.mark.django_db
def test_alert_target_is_set_from_the_target_label(t0: datetime) -> None:
    api = MonitoringTarget.objects.create(name="Device API", slug="device_service")
    make_rule("up", metric="service_up", comparison="<", threshold=1)
    store_samples("service_up", {"target": "device_service"}, [(t0, 0.0)])
    store_samples("service_up", {"target": "unknown_target"}, [(t0, 0.0)])
    evaluate_rules(now=t0)
    targets = {a.labels["target"]: a.target_id for a in Alert.objects.all()}
    assert targets == {"device_service": api.id, "unknown_target": None}


@pytest.mark.django_db
def test_new_alert_under_a_silence_is_recorded_silenced(t0: datetime) -> None:
    rule = make_rule("up", metric="service_up", comparison="<", threshold=1)
    Silence.objects.create(rule=rule, starts_at=t0 - timedelta(minutes=1), ends_at=t0 + timedelta(hours=1))
    store_samples("service_up", {"target": "api"}, [(t0, 0.0)])
    evaluate_rules(now=t0)
    alert = Alert.objects.get()
    assert alert.state == AlertState.ACTIVE and alert.silenced
    assert [e[:2] for e in events_of(alert)] == [("", "active")]


@pytest.mark.django_db
def test_child_alert_is_suppressed_by_firing_parent_target_alert(t0: datetime) -> None:
    gateway = MonitoringTarget.objects.create(name="Gateway", slug="gateway")
    MonitoringTarget.objects.create(name="Sensor", slug="sensor", parent=gateway)
    make_rule("up", metric="service_up", comparison="<", threshold=1)
    store_samples("service_up", {"target": "gateway"}, [(t0, 0.0)])
    evaluate_rules(now=t0)
    store_samples("service_up", {"target": "sensor"}, [(t0 + timedelta(seconds=10), 0.0)])
    evaluate_rules(now=t0 + timedelta(seconds=10))
    parent = Alert.objects.get(labels__target="gateway")
    child = Alert.objects.get(labels__target="sensor")
    assert parent.suppressed_by_id is None
    assert child.state == AlertState.ACTIVE and child.suppressed_by_id == parent.id


@pytest.mark.django_db
def test_resolve_after_keeps_firing_through_a_dip_and_stores_false_since(t0: datetime) -> None:
    make_rule("cpu", resolve_after=120)
    points = {0: 95.0, 60: 50.0, 120: 95.0, 180: 50.0, 240: 50.0, 300: 50.0}
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(t0 + timedelta(seconds=s), v) for s, v in points.items()])
    evaluate_rules(now=t0)
    evaluate_rules(now=t0 + timedelta(seconds=60))
    alert = Alert.objects.get()
    assert (alert.state, alert.false_since) == (AlertState.ACTIVE, t0 + timedelta(seconds=60))
    evaluate_rules(now=t0 + timedelta(seconds=120))
    alert.refresh_from_db()
    assert (alert.state, alert.false_since) == (AlertState.ACTIVE, None)
    for s in (180, 240):
        evaluate_rules(now=t0 + timedelta(seconds=s))
    assert Alert.objects.get().state == AlertState.ACTIVE
    evaluate_rules(now=t0 + timedelta(seconds=300))
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_at == t0 + timedelta(seconds=300)
    assert [e[:2] for e in events_of(alert)] == [("", "active"), ("active", "resolved")]


@pytest.mark.django_db
def test_evaluating_twice_at_once_writes_nothing_twice(t0: datetime) -> None:
    make_rule("cpu")
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(t0, 95.0)])
    first = evaluate_rules(now=t0)
    again = evaluate_rules(now=t0)  # a redelivered task
    assert (first.transitions, again.transitions) == ({"active": 1}, {})
    assert AlertEvent.objects.count() == 1


@pytest.mark.django_db
def test_an_older_evaluation_never_overwrites_a_newer_one(t0: datetime) -> None:
    make_rule("cpu")
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(t0, 95.0), (t0 + timedelta(seconds=60), 20.0)])
    evaluate_rules(now=t0)
    evaluate_rules(now=t0 + timedelta(seconds=60))
    late = evaluate_rules(now=t0 + timedelta(seconds=30))  # e.g. a beat task that waited in the queue
    assert late.transitions == {}
    assert [a.state for a in Alert.objects.all()] == [AlertState.RESOLVED]


@pytest.mark.django_db
def test_disabled_rules_are_not_evaluated(t0: datetime) -> None:
    make_rule("cpu", enabled=False)
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(t0, 95.0)])
    assert evaluate_rules(now=t0).evaluated == 0
    assert not Alert.objects.exists()


@pytest.mark.django_db
def test_beat_round_skips_rules_whose_interval_has_not_elapsed(t0: datetime) -> None:
    slow = make_rule("slow", evaluation_interval=300)
    fast = make_rule("fast")  # the global interval, 60 s
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(t0, 95.0)])
    assert evaluate_rules(now=t0, only_due=True).evaluated == 2
    later = evaluate_rules(now=t0 + timedelta(seconds=60), only_due=True)
    assert (later.evaluated, later.not_due) == (1, 1)
    slow.refresh_from_db()
    fast.refresh_from_db()
    assert slow.last_evaluated_at == t0 and fast.last_evaluated_at == t0 + timedelta(seconds=60)
    # On ingest (rule ids given) a rule is evaluated whatever its interval.
    assert evaluate_rules([slow.id], now=t0 + timedelta(seconds=61)).evaluated == 1


@pytest.mark.django_db
def test_evaluation_task_returns_a_summary_line(t0: datetime) -> None:
    rule = make_rule("cpu")
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(timezone.now(), 95.0)])
    line = evaluate_rules_task.apply(kwargs={"rule_ids": [rule.id]}).get()
    assert line == "evaluated 1 rule(s), 0 not due; transitions: active=1"


@pytest.mark.django_db
def test_internal_alert_metrics_go_through_ingestion(t0: datetime) -> None:
    make_rule("cpu", severity="high")
    make_rule("disk", metric="disk_usage_percent", severity="low", duration=600)
    store_samples("cpu_usage_percent", {"host": "a"}, [(t0, 95.0)])
    store_samples("cpu_usage_percent", {"host": "b"}, [(t0, 96.0)])
    store_samples("disk_usage_percent", {"mount": "/"}, [(t0, 99.0)])
    evaluate_rules(now=t0)

    vectors = instant_vectors(["active_alerts", "alerts_fired_total"], t0)
    active = {s.labels["severity"]: s.value for s in vectors["active_alerts"]}
    assert active == {"low": 0.0, "medium": 0.0, "high": 2.0, "critical": 0.0}  # the pending one does not count
    fired = {(s.labels["rule"], s.labels["severity"]): s.value for s in vectors["alerts_fired_total"]}
    assert fired == {("cpu", "high"): 2.0}


@pytest.mark.django_db
def test_internal_alert_metrics_show_on_the_metrics_endpoint(t0: datetime, client_for) -> None:
    make_rule("cpu", severity="critical")
    store_samples("cpu_usage_percent", {"host": "a"}, [(t0, 95.0)])
    evaluate_rules(now=t0)
    body = render_exposition().decode()
    assert 'active_alerts{severity="critical"} 1' in body
    assert 'alerts_fired_total{rule="cpu",severity="critical"} 1' in body
    assert client_for("viewer").get("/metrics").status_code == 200


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    # The app reads Django settings under the CELERY_ namespace, so that is the key to set.
    previous = celery_app.conf.task_always_eager
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = True
    try:
        yield
    finally:
        celery_app.conf.CELERY_TASK_ALWAYS_EAGER = previous


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("eager_tasks")
def test_ingesting_a_watched_metric_evaluates_its_rules() -> None:
    rule = make_rule("cpu")
    other = make_rule("disk", metric="disk_usage_percent")
    triggers.forget_watched_metrics()
    # The ingestion path commits, then tells the alert engine; with eager tasks the
    # debounced evaluation runs at once instead of at the start of the next second.
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(timezone.now(), 95.0)])
    alert = Alert.objects.get()
    assert (alert.rule, alert.state) == (rule, AlertState.ACTIVE)
    other.refresh_from_db()
    assert other.last_evaluated_at is None  # a rule on another metric is not evaluated


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("eager_tasks")
def test_ingesting_a_metric_of_a_promql_rule_fires_it_without_a_beat_tick() -> None:
    rule = make_rule("hot-sites", metric="", expr="max by (site) (temperature_celsius) > 70")
    triggers.forget_watched_metrics()

    store_samples("temperature_celsius", {"site": "north", "room": "a"}, [(timezone.now(), 75.0)])

    alert = Alert.objects.get()
    assert (alert.rule, alert.state) == (rule, AlertState.ACTIVE)
    assert alert.labels == {"site": "north", "severity": rule.severity}
    assert alert.value == 75.0


# --- Instant vectors (monitoring.instant), as the service reads them ------------------------


@pytest.mark.django_db
def test_instant_vector_takes_latest_sample_within_lookback(t0: datetime) -> None:
    store_samples("temp", {"room": "a"}, [(t0 - timedelta(seconds=60), 20.0), (t0, 21.0)])
    store_samples("temp", {"room": "b"}, [(t0 - timedelta(seconds=300), 30.0)])  # exactly at the edge
    store_samples("temp", {"room": "c"}, [(t0 - timedelta(seconds=301), 40.0)])  # too old: absent
    store_samples("temp", {"room": "d"}, [(t0, math.nan)])  # NaN is a value (stored as NULL)
    store_samples("pressure", {"room": "a"}, [(t0, 1013.0)])

    vector = {s.labels["room"]: (s.value, s.ts) for s in instant_vector("temp", {}, t0)}
    assert set(vector) == {"a", "b", "d"}
    assert vector["a"] == (21.0, epoch_ms(t0))
    assert vector["b"] == (30.0, epoch_ms(t0 - timedelta(seconds=300)))
    assert math.isnan(vector["d"][0])


@pytest.mark.django_db
def test_instant_vector_in_the_past_reads_the_sample_table(t0: datetime) -> None:
    # Samples after `at` exist, so Series.last_value is not the answer.
    store_samples("temp", {"room": "a"}, [(t0 + timedelta(seconds=s), float(s)) for s in (0, 30, 60, 400)])
    store_samples("temp", {"room": "b"}, [(t0 + timedelta(seconds=200), 1.0)])
    at = t0 + timedelta(seconds=45)
    assert [(s.labels, s.value) for s in instant_vector("temp", None, at)] == [({"room": "a"}, 30.0)]
    later = t0 + timedelta(seconds=420)  # room a's last sample (400) and room b's (200) are in range
    assert sorted((s.labels["room"], s.value) for s in instant_vector("temp", None, later)) == [
        ("a", 400.0),
        ("b", 1.0),
    ]


@pytest.mark.django_db
def test_instant_vector_matchers_treat_a_missing_label_as_empty(t0: datetime) -> None:
    store_samples("up", {"job": "api", "env": "prod"}, [(t0, 1.0)])
    store_samples("up", {"job": "db"}, [(t0, 0.0)])
    assert [s.labels["job"] for s in instant_vector("up", {"env": "prod"}, t0)] == ["api"]
    assert [s.labels["job"] for s in instant_vector("up", {"env": ""}, t0)] == ["db"]
    vectors = instant_vectors(["up", "never_seen"], t0)
    assert sorted(s.labels["job"] for s in vectors["up"]) == ["api", "db"] and vectors["never_seen"] == []
