import math
import time

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from monitoring.ingest import SampleIn, ingest_samples
from monitoring.redis import redis_client

pytestmark = pytest.mark.django_db


def _scrape(client: Client, **headers) -> dict[str, dict[tuple, tuple[float, float | None]]]:
    """GET /metrics and parse it with prometheus_client's parser:
    {sample name: {sorted label items: (value, timestamp)}}."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple, tuple[float, float | None]]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (sample.value, sample.timestamp)
    return samples


@pytest.fixture
def bearer(api_keys) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {api_keys['viewer']}"}


def test_metrics_parses_and_holds_an_ingested_series_last_value_with_its_time(bearer):
    now = time.time()
    ingest_samples(
        [
            SampleIn("cpu_usage_percent", {"host": "gw-1"}, 12.0, now - 60),
            SampleIn("cpu_usage_percent", {"host": "gw-1"}, 93.5, now - 1),
            SampleIn("device_count", {}, 1742.0, now - 1),
        ]
    )

    samples = _scrape(Client(), **bearer)

    value, timestamp = samples["cpu_usage_percent"][(("host", "gw-1"),)]
    assert value == 93.5
    assert timestamp == pytest.approx(round((now - 1) * 1000) / 1000)
    assert samples["device_count"][()][0] == 1742.0
    assert samples["monitoring_series"][()][0] == 2


def test_label_values_with_quotes_backslashes_and_newlines_round_trip(make_series, bearer):
    labels = {"path": 'C:\\data\\"x"', "note": "two\nlines"}
    make_series("odd_labels", labels, [(1_764_000_000_000, 1.0)])

    samples = _scrape(Client(), **bearer)

    assert samples["odd_labels"] == {tuple(sorted(labels.items())): (1.0, 1_764_000_000.0)}


def test_non_finite_last_values_are_exposed_as_prometheus_writes_them(make_series, bearer):
    make_series("ratio", {"k": "inf"}, [(1_764_000_000_000, math.inf)])
    make_series("ratio", {"k": "ninf"}, [(1_764_000_000_000, -math.inf)])

    samples = _scrape(Client(), **bearer)

    assert samples["ratio"][(("k", "inf"),)][0] == math.inf
    assert samples["ratio"][(("k", "ninf"),)][0] == -math.inf


def test_ingestion_counters_count_accepted_and_rejected_samples(bearer):
    client = Client()
    before = _scrape(client, **bearer)
    ingest_samples(
        [SampleIn("ok_metric", {}, 1.0), SampleIn("ok_metric", {"a": "b"}, 2.0), SampleIn("bad name", {}, 3.0)]
    )

    after = _scrape(client, **bearer)

    def counter(samples, name, **labels) -> float:
        return samples.get(name, {}).get(tuple(sorted(labels.items())), (0.0, None))[0]

    accepted = "monitoring_ingest_samples_accepted_total"
    rejected = "monitoring_ingest_samples_rejected_total"
    assert counter(after, accepted) - counter(before, accepted) == 2
    reason = {"reason": "invalid_metric_name"}
    assert counter(after, rejected, **reason) - counter(before, rejected, **reason) == 1
    batches = "monitoring_ingest_batch_duration_seconds_count"
    assert counter(after, batches) - counter(before, batches) == 1


def test_celery_queue_lengths_are_read_from_the_broker(bearer):
    redis_client().lpush("celery", "message-1", "message-2")
    redis_client().lpush("celery\x06\x163", "high-priority")

    samples = _scrape(Client(), **bearer)

    assert samples["monitoring_celery_queue_length"][(("queue", "celery"),)][0] == 3
    assert samples["monitoring_broker_up"][()][0] == 1


def test_a_stored_series_named_like_an_own_metric_is_left_out(make_series, bearer):
    make_series("monitoring_series", {"pushed": "yes"}, [(1_764_000_000_000, 99.0)])

    samples = _scrape(Client(), **bearer)

    assert list(samples["monitoring_series"]) == [()]  # only the system's own gauge


def test_metrics_needs_a_key_by_default(api_keys):
    client = Client()

    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer mon_wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {api_keys['norole']}").status_code == 403
    assert client.get("/metrics", HTTP_X_API_KEY=api_keys["viewer"]).status_code == 200


def test_metrics_can_be_anonymous_by_setting(settings, db):
    settings.MONITORING_METRICS_ANONYMOUS = True

    assert Client().get("/metrics").status_code == 200


def test_a_signed_in_dashboard_user_can_read_metrics(users):
    client = Client()
    client.force_login(users["viewer"])

    assert client.get("/metrics").status_code == 200


def test_metrics_answers_whatever_port_it_is_served_on(bearer):
    response = Client().get("/metrics", HTTP_HOST="monitoring.local:8080", SERVER_PORT="8080", **bearer)

    assert response.status_code == 200
    assert b"# TYPE monitoring_series gauge" in response.content


def test_metrics_refuses_writes(bearer):
    assert Client().post("/metrics", **bearer).status_code == 405
