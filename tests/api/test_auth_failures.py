"""Wrong API keys are counted per client address: past the `auth_failures` budget the
address gets 429 with Retry-After before any key is looked up, on the REST API and on the
Prometheus query API alike; a right key from another address is unaffected."""

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def budget(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth_failures": "3/minute"},
    }


def test_wrong_keys_past_the_budget_are_refused_with_429(budget, api_keys):
    client = APIClient()
    wrong = [client.get("/api/status", HTTP_X_API_KEY="mon_wrong").status_code for _ in range(3)]
    assert wrong == [401, 401, 401]

    refused = client.get("/api/status", HTTP_X_API_KEY="mon_wrong")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    body = refused.json()
    assert body["error"]["code"] == "throttled"
    assert "wrong API key" in body["error"]["message"]
    # Even the right key is refused from that address until the window ends: guessing
    # cannot be told apart from a mistyped key.
    assert client.get("/api/status", HTTP_X_API_KEY=api_keys["viewer"]).status_code == 429
    # Another address has its own budget.
    other = client.get("/api/status", HTTP_X_API_KEY=api_keys["viewer"], REMOTE_ADDR="10.1.2.3")
    assert other.status_code == 200


def test_right_keys_do_not_count(budget, api_keys):
    client = APIClient()
    codes = [client.get("/api/status", HTTP_X_API_KEY=api_keys["viewer"]).status_code for _ in range(6)]
    assert codes == [200] * 6


def test_the_prometheus_api_shares_the_budget(budget, api_keys):
    client = APIClient()
    for _ in range(2):
        assert client.get("/api/status", HTTP_X_API_KEY="mon_wrong").status_code == 401
    assert client.get("/prometheus/api/v1/labels", HTTP_X_API_KEY="mon_wrong").status_code == 401

    refused = client.get("/prometheus/api/v1/labels", HTTP_AUTHORIZATION="Bearer mon_wrong")
    assert refused.status_code == 429
    assert refused.json() == {
        "status": "error",
        "errorType": "throttled",
        "error": "Too many requests with a wrong API key from this address.",
    }
    assert 0 < int(refused["Retry-After"]) <= 60
