"""Throttles: a budget per API key (or logged-in user), per client address for keyless
heartbeats, and separate, higher budgets for ingestion and heartbeats. Past the budget:
429 in the envelope with Retry-After."""

import pytest

from healthchecks.models import HealthCheck


@pytest.fixture
def rates(settings):
    def set_rates(**rates: str) -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates},
        }

    return set_rates


def test_a_key_past_its_budget_gets_429_with_retry_after(rates, call):
    rates(key="3/minute")
    assert [call("viewer", "GET", "/api/status").status_code for _ in range(3)] == [200, 200, 200]
    refused = call("viewer", "GET", "/api/status")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    body = refused.json()
    assert body["success"] is False and body["error"]["code"] == "throttled"
    assert body["error"]["details"]["retry_after"] == int(refused["Retry-After"])
    # Another key has its own budget.
    assert call("operator", "GET", "/api/status").status_code == 200


def test_ingestion_has_its_own_budget(rates, call):
    rates(key="2/minute", ingest="5/minute")
    pushes = [call("viewer", "POST", "/api/metrics", {"samples": []}).status_code for _ in range(5)]
    assert pushes == [200] * 5
    assert call("viewer", "POST", "/api/metrics", {"samples": []}).status_code == 429
    # Queries of the same key count against the key's budget, which pushes left untouched.
    assert [call("viewer", "GET", "/api/metrics").status_code for _ in range(3)] == [200, 200, 429]


def test_prometheus_push_counts_against_ingestion(rates, call):
    rates(key="1/minute", ingest="3/minute")
    statuses = [
        call("viewer", "POST", "/api/metrics/prometheus", content_type="text/plain", data=b"up 1\n").status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]


def test_heartbeats_are_counted_per_client_address(rates, db):
    from rest_framework.test import APIClient

    rates(heartbeat="2/minute", anon="1/minute")
    check = HealthCheck.objects.create(key="cron", name="Cron", kind="heartbeat")
    client = APIClient()
    url = f"/api/heartbeat/{check.ping_uuid}"
    same = [client.post(url, REMOTE_ADDR="10.0.0.7").status_code for _ in range(3)]
    assert same == [200, 200, 429]
    assert client.post(url, REMOTE_ADDR="10.0.0.8").status_code == 200
