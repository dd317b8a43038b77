"""CORS is off until origins are configured; the API is CSRF-exempt only for requests that
carry an API key, so a logged-in browser session needs the CSRF token to write."""

import json

import pytest
from django.middleware.csrf import get_token
from django.test import Client

ORIGIN = "https://grafana.example.net"


def test_no_cors_headers_by_default(call):
    response = call("viewer", "GET", "/api/status", HTTP_ORIGIN=ORIGIN)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response


def test_a_configured_origin_may_call_with_a_key(settings, call):
    settings.CORS_ALLOWED_ORIGINS = [ORIGIN]
    response = call("viewer", "GET", "/api/status", HTTP_ORIGIN=ORIGIN)
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert "Access-Control-Allow-Credentials" not in response  # keys, never our cookies
    other = call("viewer", "GET", "/api/status", HTTP_ORIGIN="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in other
    preflight = Client().options(
        "/api/alerts/1/acknowledge",
        HTTP_ORIGIN=ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="x-api-key, content-type",
    )
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-api-key" in preflight["Access-Control-Allow-Headers"]
    # The dashboard and the admin are never opened to other origins.
    assert "Access-Control-Allow-Origin" not in Client().get("/healthz", HTTP_ORIGIN=ORIGIN)


@pytest.fixture
def session(users) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["admin"])
    return client


RULE = {"name": "Disk", "metric": "disk_usage_percent", "comparison": ">", "threshold": 90}


def test_a_session_write_without_the_csrf_token_is_refused(session):
    response = session.post("/api/alert-rules", json.dumps(RULE), content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    # A cross-site form post (curl-style JSON labelled as a form) is refused the same way.
    form = session.post("/api/alert-rules", json.dumps(RULE), content_type="application/x-www-form-urlencoded")
    assert form.status_code == 403


def test_a_session_write_with_the_csrf_token_passes(session):
    assert session.get("/api/status").status_code == 200  # sessions read without a token
    token = _csrf_token(session)
    response = session.post(
        "/api/alert-rules", json.dumps(RULE), content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 201


def test_a_key_authenticated_write_needs_no_csrf_token(caller_keys):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/api/alert-rules", json.dumps(RULE), content_type="application/json", HTTP_X_API_KEY=caller_keys["admin"]
    )
    assert response.status_code == 201


def _csrf_token(client: Client) -> str:
    from django.http import HttpRequest

    request = HttpRequest()
    token = get_token(request)
    client.cookies["csrftoken"] = request.META["CSRF_COOKIE"]
    return token
