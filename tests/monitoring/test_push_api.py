"""The push API: `POST /api/metrics` (JSON) and `POST /api/metrics/prometheus` (text
exposition), with gzip bodies, the size limit, the error envelope and who may push."""

import gzip
import json
import math
import time

import pytest
from django.test import override_settings

from monitoring.apikeys import create_api_key
from monitoring.models import Sample, Series

pytestmark = pytest.mark.django_db

JSON_URL = "/api/metrics"
PROM_URL = "/api/metrics/prometheus"


def post(client, url, body: bytes | str, content_type="application/json", **headers):
    if isinstance(body, str):
        body = body.encode()
    return client.generic("POST", url, body, content_type=content_type, **headers)


def push_json(client, samples, **headers):
    return post(client, JSON_URL, json.dumps({"samples": samples}), **headers)


def values() -> dict[tuple[str, tuple], float]:
    return {
        (s.series.name, tuple(sorted(s.series.labels.items()))): s.value
        for s in Sample.objects.select_related("series")
    }


def test_json_push_stores_samples_and_answers_with_counts(client_for):
    now = time.time()
    response = push_json(
        client_for("viewer"),
        [
            {"metric": "cpu_usage_percent", "labels": {"device_id": "d-17"}, "value": 93.5, "timestamp": now},
            {"metric": "memory_usage_percent", "value": 40},
        ],
    )

    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 2, "rejected": 0, "errors": []}
    assert values() == {
        ("cpu_usage_percent", (("device_id", "d-17"),)): 93.5,
        ("memory_usage_percent", ()): 40.0,
    }
    assert Sample.objects.get(series__name="cpu_usage_percent").ts == round(now * 1000)


def test_json_push_reports_each_rejected_sample_by_its_request_index(client_for):
    response = push_json(
        client_for("operator"),
        [
            {"metric": "ok_metric", "value": 1},
            "not an object",
            {"metric": "bad-name", "value": 1},
            {"metric": "ok_metric", "labels": {"a": "1"}, "value": 2},
            {"metric": "ok_metric", "labels": {"__x": "1"}, "value": 3},
            {"metric": "ok_metric", "labels": {"b": "1"}},
            {"metric": "ok_metric", "labels": {"c": "1"}, "value": 1, "timestamp": time.time() + 3600},
        ],
    )

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "accepted": 2,
        "rejected": 5,
        "errors": [
            {"index": 1, "reason": "invalid_sample"},
            {"index": 2, "reason": "invalid_metric_name"},
            {"index": 4, "reason": "reserved_label_name"},
            {"index": 5, "reason": "invalid_value"},
            {"index": 6, "reason": "too_far_in_future"},
        ],
    }
    assert Sample.objects.count() == 2


def test_json_push_accepts_nan_and_infinities(client_for):
    body = (
        '{"samples": ['
        '{"metric": "a", "labels": {"k": "1"}, "value": "NaN"},'
        '{"metric": "a", "labels": {"k": "2"}, "value": "+Inf"},'
        '{"metric": "a", "labels": {"k": "3"}, "value": "-Inf"},'
        '{"metric": "a", "labels": {"k": "4"}, "value": NaN},'
        '{"metric": "a", "labels": {"k": "5"}, "value": "12.5"}'
        "]}"
    )

    response = post(client_for("viewer"), JSON_URL, body)

    assert response.json()["accepted"] == 4
    assert response.json()["errors"] == [{"index": 4, "reason": "invalid_value"}]
    stored = {labels[0][1]: value for (_, labels), value in values().items()}
    assert math.isnan(stored["1"]) and math.isnan(stored["4"])
    assert stored["2"] == math.inf
    assert stored["3"] == -math.inf


def test_json_push_retried_stores_nothing_twice(client_for):
    samples = [{"metric": "up", "labels": {"i": str(i)}, "value": 1, "timestamp": time.time()} for i in range(10)]
    client = client_for("viewer")

    first = push_json(client, samples)
    again = push_json(client, samples)

    assert first.json()["accepted"] == again.json()["accepted"] == 10
    assert Sample.objects.count() == 10


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[]", '"samples" list'),
        (b'{"samples": {"metric": "x"}}', '"samples" list'),
        (b"", "not valid JSON"),
    ],
)
def test_malformed_json_is_400_in_the_envelope(client_for, body, message):
    response = post(client_for("viewer"), JSON_URL, body)

    assert response.status_code == 400
    assert response.json()["success"] is False
    assert response.json()["error"]["code"] == "bad_request"
    assert message in response.json()["error"]["message"]
    assert Sample.objects.count() == 0


def test_gzip_body_is_accepted(client_for):
    body = gzip.compress(json.dumps({"samples": [{"metric": "up", "value": 1}]}).encode())

    response = post(client_for("viewer"), JSON_URL, body, HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert Series.objects.get().name == "up"


@override_settings(MONITORING_MAX_BODY_BYTES=10_000)
def test_gzip_bomb_is_413_without_inflating_it(client_for):
    bomb = gzip.compress(b" " * 50_000_000)  # ~50 KB on the wire... inflates to 50 MB
    assert len(bomb) < 100_000
    small = gzip.compress(b'{"samples": []}' + b" " * 9_000)

    with override_settings(MONITORING_MAX_BODY_BYTES=200_000):
        response = post(client_for("viewer"), JSON_URL, bomb, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    response = post(client_for("viewer"), JSON_URL, small, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 200


def test_bad_gzip_is_400_and_unknown_encoding_is_415(client_for):
    client = client_for("viewer")

    assert post(client, JSON_URL, b"not gzip at all", HTTP_CONTENT_ENCODING="gzip").status_code == 400
    truncated = gzip.compress(b'{"samples": []}')[:-6]
    assert post(client, JSON_URL, truncated, HTTP_CONTENT_ENCODING="gzip").status_code == 400
    response = post(client, JSON_URL, b"{}", HTTP_CONTENT_ENCODING="br")
    assert response.status_code == 415
    assert response.json()["success"] is False


@override_settings(MONITORING_MAX_BODY_BYTES=1000)
def test_body_over_the_limit_is_413_json(client_for):
    body = json.dumps({"samples": [{"metric": "up", "value": 1}] * 100})
    assert len(body) > 1000

    response = post(client_for("viewer"), JSON_URL, body)

    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["success"] is False
    assert response.json()["error"]["code"] == "payload_too_large"
    assert Sample.objects.count() == 0


EXPOSITION = """\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{method="get",code="200"} 1027
http_requests_total{method="post",code="500"} 3
# HELP temperature_celsius Temperature.
# TYPE temperature_celsius gauge
temperature_celsius{sensor="a",job="from-body"} 21.5
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 5
latency_seconds_bucket{le="+Inf"} 7
latency_seconds_sum 1.25
latency_seconds_count 7
# TYPE weird gauge
weird NaN
"""


def test_prometheus_text_push_stores_every_sample_with_the_query_labels(client_for):
    response = post(client_for("viewer"), PROM_URL + "?job=devices&instance=d-17", EXPOSITION, "text/plain")

    assert response.status_code == 200, response.json()
    assert response.json() == {"success": True, "accepted": 8, "rejected": 0, "errors": []}
    stored = values()
    common = (("instance", "d-17"), ("job", "devices"))
    assert stored[("http_requests_total", (("code", "200"),) + common[:1] + common[1:] + (("method", "get"),))] == 1027
    # The query string's labels win over the body's, as a Pushgateway's grouping labels do.
    assert stored[("temperature_celsius", common + (("sensor", "a"),))] == 21.5
    assert stored[("latency_seconds_bucket", common + (("le", "+Inf"),))] == 7
    assert stored[("latency_seconds_count", common)] == 7
    assert math.isnan(stored[("weird", common)])


def test_prometheus_text_timestamps_are_milliseconds(client_for):
    ts_ms = int(time.time() * 1000) - 60_000
    body = f"# TYPE up gauge\nup 1 {ts_ms}\n"

    response = post(client_for("viewer"), PROM_URL, body, "text/plain")

    assert response.json()["accepted"] == 1
    assert Sample.objects.get().ts == ts_ms


def test_prometheus_text_push_rejects_by_sample_index(client_for):
    old_ms = int(time.time() * 1000) - 90 * 86_400_000
    body = f'# TYPE a gauge\na 1\na{{x="1"}} 2 {old_ms}\n'

    response = post(client_for("viewer"), PROM_URL, body, "text/plain")

    assert response.json() == {
        "success": True,
        "accepted": 1,
        "rejected": 1,
        "errors": [{"index": 1, "reason": "too_old"}],
    }


@pytest.mark.parametrize("body", ["this is { not prometheus", 'up{a="1" 1\n', "up one\n"])
def test_prometheus_garbage_is_400(client_for, body):
    response = post(client_for("viewer"), PROM_URL, body, "text/plain")

    assert response.status_code == 400
    assert "Prometheus text format" in response.json()["error"]["message"]
    assert Sample.objects.count() == 0


def test_prometheus_push_with_a_bad_query_label_is_400(client_for):
    response = post(client_for("viewer"), PROM_URL + "?__name__=x", "up 1\n", "text/plain")

    assert response.status_code == 400
    assert "label name" in response.json()["error"]["message"]


def test_prometheus_push_accepts_gzip(client_for):
    body = gzip.compress(b"up 1\n")

    response = post(client_for("viewer"), PROM_URL, body, "text/plain", HTTP_CONTENT_ENCODING="gzip")

    assert response.json()["accepted"] == 1


@override_settings(MONITORING_MAX_BODY_BYTES=100)
def test_prometheus_push_over_the_limit_is_413(client_for):
    response = post(client_for("viewer"), PROM_URL, "up 1\n" * 50, "text/plain")

    assert response.status_code == 413


@pytest.mark.parametrize("url", [JSON_URL, PROM_URL])
@pytest.mark.parametrize(
    ("role", "status"),
    [(None, 401), ("norole", 403), ("viewer", 200), ("operator", 200), ("admin", 200)],
)
def test_who_may_push(client_for, url, role, status):
    body = '{"samples": [{"metric": "up", "value": 1}]}' if url == JSON_URL else "up 1\n"

    response = post(client_for(role), url, body)

    assert response.status_code == status
    assert response.json()["success"] is (status == 200)
    assert Sample.objects.count() == (1 if status == 200 else 0)


@pytest.mark.parametrize("url", [JSON_URL, PROM_URL])
def test_read_only_key_may_not_push(users, api_client, url):
    key = create_api_key(user=users["admin"], name="ro", read_only=True)
    api_client.credentials(HTTP_X_API_KEY=key.plain)
    body = '{"samples": [{"metric": "up", "value": 1}]}' if url == JSON_URL else "up 1\n"

    response = post(api_client, url, body)

    assert response.status_code == 403
    assert Sample.objects.count() == 0


def test_garbage_collection_is_back_on_after_every_push(client_for):
    import gc

    client = client_for("viewer")
    post(client, JSON_URL, b"{broken")
    post(client, JSON_URL, '{"samples": [{"metric": "up", "value": 1}]}')
    post(client, PROM_URL, "garbage {", "text/plain")

    assert gc.isenabled()
