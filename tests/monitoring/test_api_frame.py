"""The API frame: every failure answers in the JSON envelope with the right status (never
HTML, never a traceback), throttling, the OpenAPI schema and its locally served UIs."""

import logging
import re

import pytest
from django.shortcuts import get_object_or_404
from django.test import Client, RequestFactory
from django.urls import path
from drf_spectacular.validation import validate_schema
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from config import urls as project_urls
from monitoring.api_frame import ok, server_error
from monitoring.models import MonitoringTarget
from monitoring.permissions import IsOperator

pytestmark = pytest.mark.django_db


class EchoView(APIView):
    permission_classes = [IsOperator]

    def post(self, request):
        return ok(received=request.data)


class PublicView(APIView):
    permission_classes = [AllowAny]

    def get(self, request):
        return ok()


class BoomView(APIView):
    def get(self, request):
        raise RuntimeError("database password is hunter2")


def plain_boom(request):
    raise RuntimeError("plain view secret")


class TargetView(APIView):
    def get(self, request, pk: int):
        return ok(target={"id": get_object_or_404(MonitoringTarget, pk=pk).pk})


urlpatterns = [
    path("api/_test/echo", EchoView.as_view()),
    path("api/_test/public", PublicView.as_view()),
    path("api/_test/boom", BoomView.as_view()),
    path("api/_test/plain-boom", plain_boom),
    path("api/_test/targets/<int:pk>", TargetView.as_view()),
    *project_urls.urlpatterns,
]


@pytest.fixture
def test_urls(settings):
    settings.ROOT_URLCONF = __name__


def assert_envelope(response, status: int, code: str) -> dict:
    """The failure envelope, as JSON, with no trace of a traceback."""
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in response.content.decode()
    return body


def test_invalid_json_body_is_400(test_urls, client_for):
    response = client_for("operator").post("/api/_test/echo", data="{not json", content_type="application/json")
    body = assert_envelope(response, 400, "bad_request")
    assert "JSON parse error" in body["error"]["message"]


def test_body_that_is_not_utf8_is_400(test_urls, client_for):
    response = client_for("operator").post("/api/_test/echo", data=b'{"a": "\xff"}', content_type="application/json")
    assert_envelope(response, 400, "bad_request")


def test_valid_json_body_reaches_the_view(test_urls, client_for):
    response = client_for("operator").post("/api/_test/echo", data={"a": 1}, format="json")
    assert response.status_code == 200
    assert response.json() == {"success": True, "received": {"a": 1}}


def test_wrong_content_type_is_415(test_urls, client_for):
    response = client_for("operator").post("/api/_test/echo", data="a=1", content_type="text/plain")
    assert_envelope(response, 415, "unsupported_media_type")


def test_missing_key_is_401_with_the_scheme_named(client_for):
    response = client_for(None).get("/api/status")
    body = assert_envelope(response, 401, "unauthorized")
    assert "credentials" in body["error"]["message"].lower()
    assert response["WWW-Authenticate"].startswith("X-API-Key")


def test_unknown_key_is_401(api_client, api_keys):
    api_client.credentials(HTTP_X_API_KEY="mon_" + "x" * 32)
    body = assert_envelope(api_client.get("/api/status"), 401, "unauthorized")
    assert body["error"]["message"] == "Invalid, revoked or expired API key."


def test_role_too_low_is_403(test_urls, client_for):
    response = client_for("viewer").post("/api/_test/echo", data={}, format="json")
    body = assert_envelope(response, 403, "forbidden")
    assert "operator" in body["error"]["message"]


def test_unknown_api_path_is_404_json_with_or_without_a_key(client_for):
    for role in (None, "viewer"):
        body = assert_envelope(client_for(role).get("/api/no/such/thing"), 404, "not_found")
        assert "/api/no/such/thing" in body["error"]["message"]


def test_unknown_object_id_is_404(test_urls, client_for):
    assert_envelope(client_for("viewer").get("/api/_test/targets/987654"), 404, "not_found")


def test_wrong_method_is_405_with_allow(client_for):
    response = client_for("admin").delete("/api/status")
    assert_envelope(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


def test_body_over_the_limit_is_413_before_it_is_read(test_urls, client_for, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    payload = '{"data": "' + "x" * 2000 + '"}'
    body = assert_envelope(
        client_for("operator").post("/api/_test/echo", data=payload, content_type="application/json"),
        413,
        "payload_too_large",
    )
    assert body["error"]["details"] == {"max_bytes": 1000}
    small = client_for("operator").post("/api/_test/echo", data={"data": "x"}, format="json")
    assert small.status_code == 200


def test_body_limit_is_the_monitoring_setting():
    from django.conf import settings

    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == settings.MONITORING_MAX_BODY_BYTES


def _rates(settings, **rates: str) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates},
    }


def test_key_over_its_rate_gets_429_with_retry_after(client_for, settings):
    _rates(settings, key="2/minute")
    viewer = client_for("viewer")
    assert [viewer.get("/api/status").status_code for _ in range(2)] == [200, 200]
    response = viewer.get("/api/status")
    body = assert_envelope(response, 429, "throttled")
    assert 0 < int(response["Retry-After"]) <= 60
    assert body["error"]["details"]["retry_after"] == int(response["Retry-After"])
    # The budget is per key: another key still gets through.
    assert client_for("operator").get("/api/status").status_code == 200


def test_anonymous_rate_counts_the_peer_address_not_x_forwarded_for(test_urls, settings):
    _rates(settings, anon="1/minute")
    client = Client()
    assert client.get("/api/_test/public").status_code == 200
    response = client.get("/api/_test/public", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert_envelope(response, 429, "throttled")
    assert "Retry-After" in response


def test_error_in_an_api_view_is_500_json_without_details(test_urls, api_keys, caplog):
    client = Client(raise_request_exception=False, HTTP_X_API_KEY=api_keys["viewer"])
    with caplog.at_level(logging.ERROR, logger="api"):
        response = client.get("/api/_test/boom")
    body = assert_envelope(response, 500, "internal_error")
    assert "hunter2" not in response.content.decode()
    assert body["error"]["details"] == {}
    # The server log has what the client does not.
    assert any("hunter2" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)


def test_error_in_a_plain_django_view_under_api_is_500_json(test_urls):
    response = Client(raise_request_exception=False).get("/api/_test/plain-boom")
    assert_envelope(response, 500, "internal_error")
    assert "plain view secret" not in response.content.decode()


def test_bad_host_under_api_is_400_json(client_for, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    response = client_for("viewer").get("/api/status", HTTP_HOST="evil.example")
    assert_envelope(response, 400, "bad_request")


def test_handler500_answers_json_under_api_and_html_elsewhere():
    factory = RequestFactory()
    api = server_error(factory.get("/api/status"))
    assert api.status_code == 500
    assert api["Content-Type"] == "application/json"
    page = server_error(factory.get("/admin/"))
    assert page.status_code == 500
    assert page["Content-Type"].startswith("text/html")


def test_session_write_without_csrf_token_is_403_json(test_urls, users):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["operator"])
    response = client.post("/api/_test/echo", data={}, content_type="application/json")
    body = assert_envelope(response, 403, "forbidden")
    assert "CSRF" in body["error"]["message"]


def test_key_authenticated_write_needs_no_csrf_token(test_urls, api_keys):
    client = Client(enforce_csrf_checks=True, HTTP_X_API_KEY=api_keys["operator"])
    assert client.post("/api/_test/echo", data={}, content_type="application/json").status_code == 200


# --- OpenAPI schema and its UIs -----------------------------------------------------------


def test_schema_is_a_valid_openapi_3_document(client_for):
    response = client_for("viewer").get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)  # raises on an invalid document
    assert schema["openapi"].startswith("3.")
    assert "/api/status" in schema["paths"]


def test_schema_needs_a_viewer(client_for):
    assert_envelope(client_for(None).get("/api/schema/"), 401, "unauthorized")
    assert_envelope(client_for("norole").get("/api/schema/"), 403, "forbidden")


CDN = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


@pytest.mark.parametrize("page", ["/api/schema/swagger/", "/api/schema/redoc/"])
def test_schema_ui_uses_only_local_assets(page, users):
    client = Client()
    client.force_login(users["viewer"])
    response = client.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    local = [a for a in assets if a.startswith("/static/drf_spectacular_sidecar/")]
    assert local, assets
    assert not CDN.search(html), CDN.search(html)
    # The assets are really served by the app (WhiteNoise), without collectstatic.
    for asset in local:
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert b"".join(served.streaming_content)


def test_schema_ui_needs_a_login():
    response = Client().get("/api/schema/swagger/")
    assert_envelope(response, 401, "unauthorized")
