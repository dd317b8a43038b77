import math
import time
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring.api_queries import format_value
from monitoring.queries import SeriesSelector, default_step_ms, list_series, query_range

pytestmark = pytest.mark.django_db

# A multiple of every step used below, so buckets start exactly here.
BASE_MS = 1_764_000_000_000 - (1_764_000_000_000 % 3_600_000)


def test_bucketing_matches_hand_computed_avg_min_max(make_series):
    samples = [
        # bucket [0, 60 s): 1, 2, 6
        (BASE_MS + 0, 1.0),
        (BASE_MS + 20_000, 2.0),
        (BASE_MS + 59_999, 6.0),
        # bucket [60 s, 120 s): 10
        (BASE_MS + 60_000, 10.0),
        # bucket [120 s, 180 s) is empty
        # bucket [180 s, 240 s): -4, 4, 3.5
        (BASE_MS + 180_000, -4.0),
        (BASE_MS + 200_000, 4.0),
        (BASE_MS + 239_000, 3.5),
    ]
    series = make_series("cpu_usage_percent", {"host": "a"}, samples)

    result = query_range(
        SeriesSelector(metric="cpu_usage_percent"),
        start_ms=BASE_MS,
        end_ms=BASE_MS + 240_000,
        step_ms=60_000,
        limit=10,
    )

    assert result.step_ms == 60_000
    (only,) = result.series
    assert only.series.id == series.id
    got = [(p.ts, p.value, p.min, p.max, p.count) for p in only.points]
    assert got == [
        (BASE_MS, pytest.approx(3.0), 1.0, 6.0, 3),
        (BASE_MS + 60_000, pytest.approx(10.0), 10.0, 10.0, 1),
        (BASE_MS + 180_000, pytest.approx(3.5 / 3), -4.0, 4.0, 3),
    ]


def test_range_bounds_are_inclusive_and_other_series_excluded(make_series):
    make_series(
        "m", {"host": "a"}, [(BASE_MS - 1, 100.0), (BASE_MS, 1.0), (BASE_MS + 1000, 2.0), (BASE_MS + 1001, 9.0)]
    )
    make_series("other", {"host": "a"}, [(BASE_MS, 50.0)])

    result = query_range(SeriesSelector(metric="m"), start_ms=BASE_MS, end_ms=BASE_MS + 1000, limit=10)

    assert result.step_ms is None
    assert [(p.ts, p.value) for p in result.series[0].points] == [(BASE_MS, 1.0), (BASE_MS + 1000, 2.0)]


def test_default_step_is_the_smallest_nice_step_under_the_point_budget():
    assert default_step_ms(0, 86_400_000) == 120_000  # 24 h: 86.4 s needed -> 2 min, 720 points
    assert default_step_ms(0, 3_600_000) == 5_000  # 1 h: 3.6 s -> 5 s
    assert default_step_ms(0, 1_000_000, max_points=1000) == 1_000
    assert default_step_ms(0, 400 * 86_400_000) == 43_200_000
    assert default_step_ms(0, 800 * 86_400_000) == 86_400_000
    assert default_step_ms(0, 2000 * 86_400_000) == 2 * 86_400_000


def test_few_points_come_back_raw(make_series, client_for):
    now_ms = int(time.time() * 1000)
    samples = [(now_ms - i * 60_000, float(i)) for i in range(10)]
    make_series("cpu_usage_percent", {"host": "a"}, samples)

    body = client_for("viewer").get("/api/metrics", {"metric": "cpu_usage_percent", "hours": 1}).json()

    assert body["success"] is True
    assert body["step"] is None
    points = body["metrics"][0]["points"]
    assert points == [{"timestamp": ts / 1000, "value": value} for ts, value in sorted(samples)]


def test_many_points_come_back_bucketed_at_the_default_step(make_series, client_for):
    end_ms = BASE_MS + 3_600_000
    # 1,800 samples, one every 2 s: over the 1,000-point budget, so 5 s buckets.
    samples = [(BASE_MS + i * 2000, float(i % 7)) for i in range(1800)]
    make_series("cpu_usage_percent", {"host": "a"}, samples)

    response = client_for("viewer").get(
        "/api/metrics", {"metric": "cpu_usage_percent", "start": BASE_MS / 1000, "end": end_ms / 1000}
    )

    body = response.json()
    assert response.status_code == 200
    assert body["step"] == 5.0
    points = body["metrics"][0]["points"]
    assert len(points) == 720
    assert sum(point["count"] for point in points) == 1800
    # A hand-computed bucket: [10 s, 15 s) holds samples 5, 6, 7 -> values 5, 6, 0.
    bucket = next(point for point in points if point["timestamp"] == (BASE_MS + 10_000) / 1000)
    assert bucket == {
        "timestamp": (BASE_MS + 10_000) / 1000,
        "value": pytest.approx(11 / 3),
        "min": 0.0,
        "max": 6.0,
        "count": 3,
    }


def test_explicit_step_buckets_even_few_points(make_series, client_for):
    make_series("m", {}, [(BASE_MS, 2.0), (BASE_MS + 30_000, 4.0)])

    body = (
        client_for("viewer")
        .get("/api/metrics", {"metric": "m", "start": BASE_MS / 1000, "end": (BASE_MS + 60_000) / 1000, "step": 60})
        .json()
    )

    assert body["step"] == 60.0
    assert body["metrics"][0]["points"] == [
        {"timestamp": BASE_MS / 1000, "value": 3.0, "min": 2.0, "max": 4.0, "count": 2}
    ]


def test_rfc3339_range_selects_the_same_points_as_epoch_seconds(make_series, client_for):
    make_series("m", {}, [(BASE_MS + 1000, 1.0), (BASE_MS + 7_200_000, 2.0)])
    start = datetime.fromtimestamp(BASE_MS / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
    end = datetime.fromtimestamp((BASE_MS + 3_600_000) / 1000, tz=UTC).isoformat()
    client = client_for("viewer")

    by_rfc3339 = client.get("/api/metrics", {"metric": "m", "start": start, "end": end}).json()
    by_epoch = client.get("/api/metrics", {"metric": "m", "start": BASE_MS / 1000, "end": BASE_MS / 1000 + 3600}).json()

    assert by_rfc3339["metrics"][0]["points"] == [{"timestamp": (BASE_MS + 1000) / 1000, "value": 1.0}]
    assert by_rfc3339["metrics"] == by_epoch["metrics"]
    assert by_rfc3339["start"] == BASE_MS / 1000


def test_list_filters_by_metric_and_labels(make_series, client_for):
    wanted = make_series("cpu_usage_percent", {"host": "a", "env": "prod"}, [(BASE_MS, 91.5)])
    make_series("cpu_usage_percent", {"host": "b", "env": "prod"}, [(BASE_MS, 10.0)])
    make_series("memory_usage_percent", {"host": "a", "env": "prod"}, [(BASE_MS, 50.0)])
    client = client_for("viewer")

    body = client.get("/api/metrics", {"metric": "cpu_usage_percent", "label": ["host:a", "env:prod"]}).json()

    assert body["count"] == 1
    assert body["metrics"] == [
        {
            "id": wanted.id,
            "metric": "cpu_usage_percent",
            "labels": {"host": "a", "env": "prod"},
            "last_value": 91.5,
            "last_timestamp": BASE_MS / 1000,
        }
    ]
    by_label = client.get("/api/metrics", {"label": "host:a"}).json()
    assert sorted(item["metric"] for item in by_label["metrics"]) == ["cpu_usage_percent", "memory_usage_percent"]


def test_label_values_may_contain_colons(make_series, client_for):
    make_series("up", {"instance": "10.0.0.5:9100"}, [(BASE_MS, 1.0)])
    make_series("up", {"instance": "10.0.0.6:9100"}, [(BASE_MS, 0.0)])

    body = client_for("viewer").get("/api/metrics", {"label": "instance:10.0.0.5:9100"}).json()

    assert [item["labels"] for item in body["metrics"]] == [{"instance": "10.0.0.5:9100"}]


def test_list_paginates_with_count_and_links(make_series, client_for):
    for host in range(5):
        make_series("load_average_1m", {"host": f"h{host}"}, [(BASE_MS, float(host))])
    client = client_for("viewer")

    first = client.get("/api/metrics", {"metric": "load_average_1m", "limit": 2}).json()
    assert first["count"] == 5
    assert [item["labels"]["host"] for item in first["metrics"]] == ["h0", "h1"]
    assert first["previous"] is None
    assert "offset=2" in first["next"] and "limit=2" in first["next"]

    second = client.get(first["next"]).json()
    assert [item["labels"]["host"] for item in second["metrics"]] == ["h2", "h3"]
    assert "offset" not in second["previous"]

    last = client.get(second["next"]).json()
    assert [item["labels"]["host"] for item in last["metrics"]] == ["h4"]
    assert last["next"] is None


def test_series_without_samples_are_listed_with_null_last_value(make_series, client_for):
    make_series("fresh", {})

    body = client_for("viewer").get("/api/metrics", {"metric": "fresh"}).json()

    assert body["metrics"][0]["last_value"] is None
    assert body["metrics"][0]["last_timestamp"] is None


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"hours": "abc"}, "hours"),
        ({"hours": "-1"}, "hours"),
        ({"hours": "1", "start": "1764000000"}, "start"),
        ({"end": "1764000000"}, "start"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2025-11-29T01:00:00"}, "start"),  # no offset
        ({"start": "1764000000", "end": "1763000000"}, "end"),
        ({"hours": "24", "step": "1"}, "step"),  # 86,400 buckets
        ({"step": "60"}, "step"),  # no range
        ({"metric": "not a name"}, "metric"),
        ({"label": "no-colon"}, "label"),
        ({"label": "bad-name:x"}, "label"),
        ({"limit": "0"}, "limit"),
        ({"hours": "1", "limit": "100000"}, "limit"),
        ({"metrics": "cpu_usage_percent"}, "metrics"),  # a typo is not ignored
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(client_for, params, parameter):
    response = client_for("viewer").get("/api/metrics", params)

    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "bad_request"
    assert parameter in body["error"]["details"]


def test_queries_need_a_key(client_for):
    response = client_for(None).get("/api/metrics")

    assert response.status_code == 401
    assert response.json()["success"] is False


def _queries_for(client, params) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/api/metrics", params).status_code == 200
    return len(captured)


@pytest.mark.parametrize("params", [{}, {"hours": 2}, {"hours": 2, "step": 60}])
def test_query_count_does_not_grow_with_the_number_of_series(
    make_series, client_for, django_assert_max_num_queries, params
):
    now_ms = int(time.time() * 1000)
    client = client_for("viewer")
    client.get("/api/metrics")  # the key's last_used_at write happens once, here
    for host in range(3):
        make_series("m", {"host": str(host)}, [(now_ms - i * 1000, 1.0) for i in range(5)])
    few = _queries_for(client, {"metric": "m", **params})
    for host in range(3, 40):
        make_series("m", {"host": str(host)}, [(now_ms - i * 1000, 1.0) for i in range(5)])

    with django_assert_max_num_queries(few):
        body = client.get("/api/metrics", {"metric": "m", **params}).json()
    assert body["count"] == 40


def test_non_finite_values_are_written_as_prometheus_strings():
    assert format_value(1.5) == 1.5
    assert format_value(None) is None
    assert format_value(math.nan) == "NaN"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"


def test_list_series_selector_without_filters_returns_every_series_by_name(make_series):
    make_series("b_metric", {}, [(BASE_MS, 1.0)])
    make_series("a_metric", {}, [(BASE_MS, 2.0)])

    page = list_series(SeriesSelector(), limit=10)

    assert page.count == 2
    assert [info.metric for info in page.series] == ["a_metric", "b_metric"]


def test_nan_samples_come_back_as_nan_and_are_skipped_by_bucket_aggregates(make_series, client_for):
    make_series("ratio", {}, [(BASE_MS, 1.0), (BASE_MS + 1000, math.nan), (BASE_MS + 60_000, math.nan)])
    client = client_for("viewer")
    start, end = BASE_MS / 1000, BASE_MS / 1000 + 120

    listed = client.get("/api/metrics", {"metric": "ratio"}).json()
    raw = client.get("/api/metrics", {"metric": "ratio", "start": start, "end": end}).json()
    bucketed = client.get("/api/metrics", {"metric": "ratio", "start": start, "end": end, "step": 60}).json()

    assert listed["metrics"][0]["last_value"] == "NaN"
    assert [point["value"] for point in raw["metrics"][0]["points"]] == [1.0, "NaN", "NaN"]
    assert bucketed["metrics"][0]["points"] == [
        {"timestamp": start, "value": 1.0, "min": 1.0, "max": 1.0, "count": 2},
        {"timestamp": start + 60, "value": "NaN", "min": "NaN", "max": "NaN", "count": 1},
    ]


def test_a_reused_series_id_never_shows_the_labels_cached_for_the_old_series(make_series):
    from monitoring.models import Series

    old = make_series("m", {"host": "old"}, [(BASE_MS, 1.0)])
    assert list_series(SeriesSelector(metric="m"), limit=10).series[0].labels == {"host": "old"}
    series_id = old.id
    old.delete()
    Series.objects.create(id=series_id, name="m", labels={"host": "new"}, fingerprint="f" * 32, last_ts=BASE_MS)

    (info,) = list_series(SeriesSelector(metric="m"), limit=10).series

    assert info.id == series_id
    assert info.labels == {"host": "new"}


def test_a_large_page_of_unseen_series_reads_its_labels_with_the_page(db):
    from monitoring.models import Series
    from monitoring.queries import LABELS_BY_ID_LIMIT

    hosts = LABELS_BY_ID_LIMIT + 20
    Series.objects.bulk_create(
        Series(name="m", labels={"host": f"h{host:04}"}, fingerprint=f"{host:032}", last_ts=BASE_MS)
        for host in range(hosts)
    )

    page = list_series(SeriesSelector(metric="m"), limit=hosts, offset=1)

    assert page.count == hosts
    assert [info.labels for info in page.series] == [{"host": f"h{host:04}"} for host in range(1, hosts)]
