"""monitoring.ingest: validation by Prometheus's rules, bulk storage, idempotent retries,
last values, and the hand-off to the alert engine. Runs on SQLite and on PostgreSQL."""

import math
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alerts.triggers import DEBOUNCE_KEY
from monitoring import ingest
from monitoring.ingest import RejectReason, SampleIn, ingest_samples, ingest_stats, series_fingerprint
from monitoring.models import GlobalSettings, Sample, Series
from monitoring.redis import redis_client

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW_S = NOW.timestamp()
NOW_MS = int(NOW_S * 1000)


def stored() -> list[tuple[str, dict, int, float]]:
    """Every stored sample as (metric, labels, ts ms, value), in a stable order."""
    rows = [(row.series.name, row.series.labels, row.ts, row.value) for row in Sample.objects.select_related("series")]
    return sorted(rows, key=lambda row: (row[0], sorted(row[1].items()), row[2]))


def one(metric="cpu_usage_percent", labels=None, value=1.0, timestamp=NOW_S) -> SampleIn:
    return SampleIn(metric, {"device_id": "d-1"} if labels is None else labels, value, timestamp)


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        (one(metric="9cpu"), RejectReason.INVALID_METRIC_NAME),
        (one(metric="cpu-usage"), RejectReason.INVALID_METRIC_NAME),
        (one(metric=""), RejectReason.INVALID_METRIC_NAME),
        (one(metric=None), RejectReason.INVALID_METRIC_NAME),
        (one(metric="a" * 201), RejectReason.METRIC_NAME_TOO_LONG),
        (one(labels=["device_id", "d-1"]), RejectReason.INVALID_LABELS),
        (one(labels={"1device": "d-1"}), RejectReason.INVALID_LABEL_NAME),
        (one(labels={"device:id": "d-1"}), RejectReason.INVALID_LABEL_NAME),
        (one(labels={"": "x"}), RejectReason.INVALID_LABEL_NAME),
        (one(labels={7: "x"}), RejectReason.INVALID_LABEL_NAME),
        (one(labels={"__name__": "cpu"}), RejectReason.RESERVED_LABEL_NAME),
        (one(labels={"__meta_x": "y"}), RejectReason.RESERVED_LABEL_NAME),
        (one(labels={"device_id": 17}), RejectReason.INVALID_LABEL_VALUE),
        (one(labels={"device_id": None}), RejectReason.INVALID_LABEL_VALUE),
        (one(labels={"device_id": ["d-1"]}), RejectReason.INVALID_LABEL_VALUE),
        (one(labels={"device_id": "x" * 1025}), RejectReason.LABEL_VALUE_TOO_LONG),
        (one(labels={"device_id": "é" * 513}), RejectReason.LABEL_VALUE_TOO_LONG),  # 1026 bytes
        (one(labels={f"l{i}": "v" for i in range(33)}), RejectReason.TOO_MANY_LABELS),
        (one(value="93.5"), RejectReason.INVALID_VALUE),
        (one(value=None), RejectReason.INVALID_VALUE),
        (one(value=True), RejectReason.INVALID_VALUE),
        (one(value=10**400), RejectReason.INVALID_VALUE),
        (one(timestamp="1764380000"), RejectReason.INVALID_TIMESTAMP),
        (one(timestamp=math.nan), RejectReason.INVALID_TIMESTAMP),
        (one(timestamp=math.inf), RejectReason.INVALID_TIMESTAMP),
        (one(timestamp=NOW_S - 30 * 86400 - 1), RejectReason.TOO_OLD),
        (one(timestamp=NOW_S + 601), RejectReason.TOO_FAR_IN_FUTURE),
    ],
)
def test_invalid_sample_is_rejected_with_its_reason(sample, reason):
    result = ingest_samples([sample], now=NOW)

    assert result.accepted == 0
    assert [(r.index, r.reason) for r in result.rejected] == [(0, reason.value)]
    assert result.changed_metrics == frozenset()
    assert Sample.objects.count() == 0
    assert Series.objects.count() == 0


@pytest.mark.parametrize(
    "sample",
    [
        one(metric="node:cpu_usage:rate5m"),
        one(metric="_private"),
        one(labels={"_device": "d-1", "Zone9": "x"}),
        one(labels={}),
        one(labels={"device_id": "x" * 1024}),
        one(labels={"device_id": "é" * 512}),
        one(labels={f"l{i}": "v" for i in range(32)}),
        one(value=93),
        one(value=-0.5),
        one(timestamp=None),
        one(timestamp=int(NOW_S)),
        one(timestamp=NOW_S - 30 * 86400 + 1),
        one(timestamp=NOW_S + 600),
    ],
)
def test_valid_sample_at_the_edge_of_a_rule_is_stored(sample):
    result = ingest_samples([sample], now=NOW)

    assert result.accepted == 1, result.rejected
    assert result.rejected == ()
    assert Sample.objects.count() == 1


def test_retention_bounds_follow_global_settings():
    settings = GlobalSettings.load()
    settings.retention_days = 2
    settings.save()

    result = ingest_samples([one(timestamp=NOW_S - 3 * 86400), one(timestamp=NOW_S - 86400)], now=NOW)

    assert [(r.index, r.reason) for r in result.rejected] == [(0, "too_old")]
    assert result.accepted == 1


def test_sample_without_timestamp_is_stored_at_now():
    ingest_samples([one(timestamp=None, value=5.0)], now=NOW)

    assert stored() == [("cpu_usage_percent", {"device_id": "d-1"}, NOW_MS, 5.0)]


def test_timestamp_in_seconds_is_stored_in_milliseconds():
    ingest_samples([one(timestamp=NOW_S - 12.3456)], now=NOW)

    assert Sample.objects.get().ts == NOW_MS - 12346


def test_nan_and_infinities_round_trip():
    result = ingest_samples(
        [
            one(labels={"v": "nan"}, value=math.nan),
            one(labels={"v": "inf"}, value=math.inf),
            one(labels={"v": "-inf"}, value=-math.inf),
        ],
        now=NOW,
    )

    assert result.accepted == 3
    values = {row.series.labels["v"]: row.value for row in Sample.objects.select_related("series")}
    assert math.isnan(values["nan"])
    assert values["inf"] == math.inf
    assert values["-inf"] == -math.inf
    last = {series.labels["v"]: series.last_value for series in Series.objects.all()}
    assert math.isnan(last["nan"])
    assert last["inf"] == math.inf
    assert last["-inf"] == -math.inf


def test_nan_is_null_in_the_table_so_aggregates_skip_it_on_every_database():
    ingest_samples([one(value=math.nan, timestamp=NOW_S - 1), one(value=4.0)], now=NOW)

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(value), AVG(value) FROM monitoring_sample")
        assert cursor.fetchone() == (1, 4.0)


def test_partly_bad_batch_stores_the_good_samples_and_reports_each_bad_one():
    batch = [
        one(labels={"device_id": "d-1"}, value=1.0),
        one(metric="bad-name"),
        one(labels={"device_id": "d-2"}, value=2.0),
        one(value="x"),
        one(labels={"__x": "y"}),
        one(metric="mem_usage_percent", value=3.0),
    ]

    result = ingest_samples(batch, now=NOW)

    assert result.accepted == 3
    assert [(r.index, r.reason) for r in result.rejected] == [
        (1, "invalid_metric_name"),
        (3, "invalid_value"),
        (4, "reserved_label_name"),
    ]
    assert result.changed_metrics == frozenset({"cpu_usage_percent", "mem_usage_percent"})
    assert stored() == [
        ("cpu_usage_percent", {"device_id": "d-1"}, NOW_MS, 1.0),
        ("cpu_usage_percent", {"device_id": "d-2"}, NOW_MS, 2.0),
        ("mem_usage_percent", {"device_id": "d-1"}, NOW_MS, 3.0),
    ]


def test_retried_batch_stores_nothing_twice():
    batch = [one(labels={"device_id": f"d-{i}"}, value=float(i), timestamp=NOW_S - i) for i in range(50)]

    first = ingest_samples(batch, now=NOW)
    before = stored()
    again = ingest_samples(batch, now=NOW)

    assert first.accepted == again.accepted == 50
    assert stored() == before
    assert len(before) == 50
    assert Series.objects.count() == 50


def test_retry_with_other_values_keeps_the_first_stored_sample():
    ingest_samples([one(value=1.0)], now=NOW)
    ingest_samples([one(value=2.0), one(value=3.0, timestamp=NOW_S + 1)], now=NOW)

    assert [row[2:] for row in stored()] == [(NOW_MS, 1.0), (NOW_MS + 1000, 3.0)]


def test_duplicates_within_a_batch_collapse_to_the_first():
    result = ingest_samples([one(value=1.0), one(value=2.0), one(value=3.0)], now=NOW)

    assert result.accepted == 3
    assert [row[2:] for row in stored()] == [(NOW_MS, 1.0)]
    assert Series.objects.get().last_value == 1.0


def test_label_order_and_empty_label_values_do_not_make_another_series():
    ingest_samples(
        [
            one(labels={"a": "1", "b": "2"}, timestamp=NOW_S - 3),
            one(labels={"b": "2", "a": "1"}, timestamp=NOW_S - 2),
            one(labels={"b": "2", "a": "1", "c": ""}, timestamp=NOW_S - 1),
        ],
        now=NOW,
    )

    series = Series.objects.get()
    assert series.labels == {"a": "1", "b": "2"}
    assert series.fingerprint == series_fingerprint("cpu_usage_percent", {"a": "1", "b": "2"})
    assert Sample.objects.filter(series=series).count() == 3


def test_fingerprint_is_stable():
    # Pinned: stored fingerprints must survive upgrades.
    assert series_fingerprint("up", {}) == series_fingerprint("up", {})
    assert series_fingerprint("cpu", {"b": "2", "a": "1"}) == series_fingerprint("cpu", {"a": "1", "b": "2"})
    assert series_fingerprint("cpu", {"a": "1"}) != series_fingerprint("cpu", {"a": "1", "b": ""})
    assert series_fingerprint("cpu", {"ab": "c"}) != series_fingerprint("cpu", {"a": "bc"})
    assert series_fingerprint("cpu_usage_percent", {"device_id": "d-17"}) == "2d638df7862bc658412042bd8f4c74bd"


def test_last_value_moves_only_to_a_newer_sample():
    ingest_samples([one(value=1.0, timestamp=NOW_S - 60)], now=NOW)
    series = Series.objects.get()
    assert (series.last_value, series.last_ts) == (1.0, NOW_MS - 60_000)

    ingest_samples([one(value=2.0, timestamp=NOW_S - 30), one(value=9.0, timestamp=NOW_S - 90)], now=NOW)
    series.refresh_from_db()
    assert (series.last_value, series.last_ts) == (2.0, NOW_MS - 30_000)

    ingest_samples([one(value=7.0, timestamp=NOW_S - 120)], now=NOW)  # a late, older sample
    series.refresh_from_db()
    assert (series.last_value, series.last_ts) == (2.0, NOW_MS - 30_000)
    assert Sample.objects.count() == 4


def test_last_value_of_many_series_in_one_batch():
    batch = [one(labels={"device_id": f"d-{i}"}, value=float(i), timestamp=NOW_S - 10) for i in range(20)]
    batch += [one(labels={"device_id": f"d-{i}"}, value=float(100 + i), timestamp=NOW_S) for i in range(0, 20, 2)]

    ingest_samples(batch, now=NOW)

    last = {s.labels["device_id"]: (s.last_value, s.last_ts) for s in Series.objects.all()}
    assert last["d-0"] == (100.0, NOW_MS)
    assert last["d-1"] == (1.0, NOW_MS - 10_000)
    assert last["d-18"] == (118.0, NOW_MS)
    assert last["d-19"] == (19.0, NOW_MS - 10_000)


def test_samples_spanning_days_are_all_stored():
    # On PostgreSQL these fall into daily partitions, some made on demand.
    batch = [one(value=float(day), timestamp=NOW_S - day * 86400) for day in range(0, 29, 4)]

    result = ingest_samples(batch, now=NOW)

    assert result.accepted == 8
    assert Sample.objects.count() == 8


def test_stats_count_accepted_and_rejected_by_reason():
    before = ingest_stats()

    ingest_samples([one(), one(metric="9x"), one(metric="8x"), one(value="v")], now=NOW)

    after = ingest_stats()
    assert after.accepted - before.accepted == 1
    assert after.rejected.get("invalid_metric_name", 0) - before.rejected.get("invalid_metric_name", 0) == 2
    assert after.rejected.get("invalid_value", 0) - before.rejected.get("invalid_value", 0) == 1
    assert after.batches - before.batches == 1


def test_stats_are_also_prometheus_counters():
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("monitoring_ingest_samples_rejected_total", {"reason": "too_old"}) or 0

    ingest_samples([one(timestamp=NOW_S - 90 * 86400)], now=NOW)

    after = REGISTRY.get_sample_value("monitoring_ingest_samples_rejected_total", {"reason": "too_old"})
    assert after == before + 1


def test_empty_batch_stores_nothing():
    result = ingest_samples([], now=NOW)

    assert result.accepted == 0
    assert result.rejected == ()


def test_alert_engine_hears_the_changed_metrics_after_commit(django_capture_on_commit_callbacks):
    from alerts.models import AlertRule

    rule = AlertRule.objects.create(name="hot", key="hot", metric="cpu_usage_percent", comparison=">", threshold=90)
    redis_client().flushdb()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = ingest_samples([one(value=95.0), one(metric="other_metric")], now=NOW)
    assert result.changed_metrics == frozenset({"cpu_usage_percent", "other_metric"})
    assert not redis_client().keys(DEBOUNCE_KEY.format(rule_id=rule.id, slot="*"))

    for callback in callbacks:
        callback()

    assert redis_client().keys(DEBOUNCE_KEY.format(rule_id=rule.id, slot="*"))


def test_batch_with_only_rejects_tells_nobody(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        ingest_samples([one(metric="9x")], now=NOW)

    assert callbacks == []


@pytest.mark.django_db(transaction=True)
def test_cached_series_deleted_by_hand_is_made_again():
    ingest_samples([one(value=1.0, timestamp=NOW_S - 2)], now=NOW)  # commits: the id is cached
    assert ingest._series_cache
    Series.objects.all().delete()

    result = ingest_samples([one(value=2.0, timestamp=NOW_S - 1)], now=NOW)

    assert result.accepted == 1
    series = Series.objects.get()
    assert [(s.series_id, s.value) for s in Sample.objects.filter(ts=NOW_MS - 1000)] == [(series.id, 2.0)]
    assert series.last_value == 2.0


@pytest.mark.django_db(transaction=True)
def test_cached_series_are_used_across_batches(django_assert_max_num_queries):
    batch = [one(labels={"device_id": f"d-{i}"}, timestamp=NOW_S - 1) for i in range(100)]
    ingest_samples(batch, now=NOW)

    # Settings, the sample insert and the last-value update (+ savepoint bookkeeping);
    # no query per series or per sample.
    with django_assert_max_num_queries(8):
        result = ingest_samples([one(labels={"device_id": f"d-{i}"}) for i in range(100)], now=NOW)
    assert result.accepted == 100
    assert Sample.objects.count() == 200


@pytest.mark.django_db(transaction=True)
def test_a_changed_retention_applies_to_the_next_batch():
    assert ingest_samples([one(timestamp=NOW_S - 3 * 86400)], now=NOW).accepted == 1  # read and kept: 30 days
    settings = GlobalSettings.load()
    settings.retention_days = 2
    settings.save()

    result = ingest_samples([one(timestamp=NOW_S - 3 * 86400 + 1)], now=NOW)

    assert [r.reason for r in result.rejected] == ["too_old"]


class Statements:
    """Records the SQL run through Django's cursors (connection.execute_wrapper)."""

    def __init__(self):
        self.sql: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        self.sql.append(sql)
        return execute(sql, params, many, context)


@pytest.mark.django_db(transaction=True)
def test_a_batch_committed_by_ingest_does_not_wait_for_the_wal_flush_on_postgresql(settings):
    labels = {"device_id": "wal-flush"}  # a series no earlier test left in the cache
    statements = Statements()
    with connection.execute_wrapper(statements):
        ingest_samples([one(labels=labels)], now=NOW)
    settings.MONITORING_INGEST_SYNCHRONOUS_COMMIT = True
    strict = Statements()
    with connection.execute_wrapper(strict):
        ingest_samples([one(labels=labels, timestamp=NOW_S - 1)], now=NOW)

    relaxed = [sql for sql in statements.sql if "synchronous_commit" in sql]
    assert relaxed == (["SET LOCAL synchronous_commit = off"] if connection.vendor == "postgresql" else [])
    assert not [sql for sql in strict.sql if "synchronous_commit" in sql]
    assert Sample.objects.count() == 2


def test_a_batch_inside_the_callers_transaction_keeps_its_durability():
    # The caller's transaction may hold alert transitions and notifications: never relaxed.
    statements = Statements()
    with connection.execute_wrapper(statements):
        ingest_samples([one()], now=NOW)

    assert not [sql for sql in statements.sql if "synchronous_commit" in sql]
    assert Sample.objects.count() == 1


def test_the_metrics_pages_hear_of_new_samples_after_commit(django_capture_on_commit_callbacks):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from dashboard.publish import GROUP_METRICS

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(GROUP_METRICS, channel)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            ingest_samples([one(metric="published_metric_one"), one(metric="published_metric_two")], now=NOW)
        message = async_to_sync(layer.receive)(channel)
    finally:
        async_to_sync(layer.group_discard)(GROUP_METRICS, channel)

    assert message["event"] == "metrics.changed"
    assert message["payload"]["metrics"] == ["published_metric_one", "published_metric_two"]


# --- last values and the cost of a batch ---------------------------------------------------


def last_of(device: str) -> tuple[float, int]:
    series = Series.objects.get(labels__device_id=device)
    return series.last_value, series.last_ts


def test_out_of_order_batch_keeps_each_series_newest_sample():
    batch = [
        one(labels={"device_id": "a"}, value=3.0, timestamp=NOW_S - 10),
        one(labels={"device_id": "b"}, value=5.0, timestamp=NOW_S - 40),
        one(labels={"device_id": "a"}, value=1.0, timestamp=NOW_S - 30),
        one(labels={"device_id": "a"}, value=9.0, timestamp=NOW_S - 5),
        one(labels={"device_id": "b"}, value=6.0, timestamp=NOW_S - 50),
        one(labels={"device_id": "a"}, value=2.0, timestamp=NOW_S - 20),
        one(labels={"device_id": "a"}, value=8.0, timestamp=NOW_S - 5),  # same time: the first one stays
    ]

    ingest_samples(batch, now=NOW)

    assert last_of("a") == (9.0, NOW_MS - 5_000)
    assert last_of("b") == (5.0, NOW_MS - 40_000)
    assert Sample.objects.get(series__labels__device_id="a", ts=NOW_MS - 5_000).value == 9.0


def test_a_nan_sample_becomes_the_last_value_and_a_later_number_replaces_it():
    ingest_samples([one(value=4.0, timestamp=NOW_S - 20), one(value=math.nan, timestamp=NOW_S - 10)], now=NOW)

    value, ts = last_of("d-1")
    assert math.isnan(value)
    assert ts == NOW_MS - 10_000
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value FROM monitoring_series")
        assert cursor.fetchone() == (None,)  # NaN is NULL in the table, as in the sample

    ingest_samples([one(value=5.0, timestamp=NOW_S)], now=NOW)
    assert last_of("d-1") == (5.0, NOW_MS)


def test_a_retried_older_batch_leaves_the_newer_last_value():
    older = [one(labels={"device_id": f"d-{i}"}, value=float(i), timestamp=NOW_S - 60) for i in range(5)]
    newer = [one(labels={"device_id": f"d-{i}"}, value=float(10 + i), timestamp=NOW_S) for i in range(5)]

    ingest_samples(older, now=NOW)
    ingest_samples(newer, now=NOW)
    again = ingest_samples(older, now=NOW)  # the client never saw the first answer

    assert again.accepted == 5
    assert [last_of(f"d-{i}") for i in range(5)] == [(float(10 + i), NOW_MS) for i in range(5)]
    assert Sample.objects.count() == 10


@pytest.mark.django_db(transaction=True)
def test_cached_batch_with_bad_samples_reports_each_by_index():
    # Every series known: the batch starts on the whole-list path and must fall back to the
    # per-sample rules when one sample is not the usual float at a good time.
    labels = [{"device_id": f"cached-{i}"} for i in range(6)]
    ingest_samples([one(labels=label, timestamp=NOW_S - 100) for label in labels], now=NOW)

    result = ingest_samples(
        [
            one(labels=labels[0], value=1.0),
            one(labels=labels[1], value=2),  # an int is a number
            one(labels=labels[2], value=True),
            one(labels=labels[3], timestamp=math.nan),
            one(labels=labels[4], timestamp=NOW_S - 400 * 86400),
            one(labels=labels[5], value=math.nan),
        ],
        now=NOW,
    )

    assert [(r.index, r.reason) for r in result.rejected] == [
        (2, "invalid_value"),
        (3, "invalid_timestamp"),
        (4, "too_old"),
    ]
    assert result.accepted == 3
    assert last_of("cached-1") == (2.0, NOW_MS)
    assert math.isnan(last_of("cached-5")[0])
    assert last_of("cached-2") == (1.0, NOW_MS - 100_000)


def queries_for_cached_batch(size: int, timestamp: float) -> int:
    batch = [one(labels={"device_id": f"count-{i}"}, value=float(i), timestamp=timestamp) for i in range(size)]
    with CaptureQueriesContext(connection) as captured:
        result = ingest_samples(batch, now=NOW)
    assert result.accepted == size
    return len(captured)


@pytest.mark.django_db(transaction=True)
def test_queries_per_batch_do_not_grow_with_the_batch_size():
    # Every series cached: what is left is the transaction, the samples and the last values.
    # Below COPY_MIN_ROWS a batch takes INSERT ... ON CONFLICT, at or above it COPY: each
    # path is compared with itself at two sizes.
    from monitoring.storage import COPY_MIN_ROWS

    big = COPY_MIN_ROWS * 8
    ingest_samples([one(labels={"device_id": f"count-{i}"}, timestamp=NOW_S - 100) for i in range(big)], now=NOW)

    small_path = [queries_for_cached_batch(size, NOW_S - 50 + size / 1000) for size in (10, COPY_MIN_ROWS - 1)]
    copy_path = [queries_for_cached_batch(size, NOW_S - 20 + size / 1000) for size in (COPY_MIN_ROWS, big)]

    assert small_path[0] == small_path[1] <= 6
    assert copy_path[0] == copy_path[1] <= 8
    assert Series.objects.filter(last_ts=NOW_MS - 20_000 + big).count() == big
