"""The evaluation service on the database, and the on-ingest trigger that schedules it."""

from collections.abc import Mapping, Sequence
from datetime import datetime

import pytest
from django.test import override_settings

from alerts import triggers
from alerts.engine import label_fingerprint
from alerts.models import AlertRule
from monitoring.instant import epoch_ms
from monitoring.models import Sample, Series
from monitoring.redis import redis_client


def make_rule(key: str = "cpu-high", **fields: object) -> AlertRule:
    defaults = {"name": key, "metric": "cpu_usage_percent", "comparison": ">", "threshold": 80.0, "duration": 0}
    return AlertRule.objects.create(key=key, **(defaults | fields))


def store_samples(metric: str, labels: Mapping[str, str], points: Sequence[tuple[datetime, float]]) -> Series:
    """Store samples of one series as the ingestion path leaves them: the rows, and the
    series' last value and time."""
    series, _ = Series.objects.get_or_create(
        fingerprint=label_fingerprint({"__name__": metric, **labels}), defaults={"name": metric, "labels": dict(labels)}
    )
    Sample.objects.bulk_create([Sample(series=series, ts=epoch_ms(at), value=value) for at, value in points])
    newest_at, newest_value = max(points, key=lambda point: point[0])
    if series.last_ts is None or epoch_ms(newest_at) >= series.last_ts:
        series.last_ts, series.last_value = epoch_ms(newest_at), newest_value
        series.save(update_fields=["last_ts", "last_value"])
    return series


@pytest.mark.django_db
def test_rules_watching_lists_enabled_rules_of_the_changed_metrics() -> None:
    cpu = make_rule("cpu")
    disk = make_rule("disk", metric="disk_usage_percent")
    make_rule("cpu-off", enabled=False)
    make_rule("other", metric="memory_usage_percent")

    assert triggers.rules_watching({"cpu_usage_percent", "disk_usage_percent", "unwatched"}) == sorted(
        [cpu.id, disk.id]
    )


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
