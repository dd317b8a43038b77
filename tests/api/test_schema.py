"""The OpenAPI document: served at /api/schema/ to viewers, valid with no generator warning,
describing every route, the API-key security schemes, the success envelope of every answer
and the error envelope of every failure; Swagger UI and ReDoc served from local assets."""

import re

import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse

from .routes import EXPECTED, PUBLIC, api_routes


@pytest.fixture
def document(call) -> dict:
    response = call("viewer", "GET", "/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _resolve(document, schema["allOf"][0])
    return schema


def _operations(document: dict):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method.upper(), operation


def test_the_schema_is_for_viewers(call):
    assert call(None, "GET", "/api/schema/").status_code == 401
    served = call("viewer", "GET", "/api/schema/")
    assert served.status_code == 200
    assert yaml.safe_load(served.content)["openapi"].startswith("3.")


def test_the_schema_generates_without_a_warning(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert yaml.safe_load((tmp_path / "schema.yaml").read_text())["paths"]


def test_every_api_route_is_described(document):
    def template(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "{}", path)

    described = {(template(path), method) for path, method, _ in _operations(document)}
    for route in api_routes():
        if route.name in ("api-schema", "api-swagger", "api-redoc"):
            continue
        probe = re.sub(r"/(999999|00000000-0000-4000-8000-000000000000)(?=/|$)", "/{}", route.path)
        assert (probe, route.method) in described, f"{route.method} {route.path} is not in the schema"


def test_api_keys_are_the_security_schemes(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key (`mon_...`).",
    }
    assert schemes["BearerKey"]["scheme"] == "bearer"
    status = document["paths"]["/api/status"]["get"]
    assert {"ApiKeyHeader": []} in status["security"] and {"BearerKey": []} in status["security"]


def test_every_success_is_the_envelope_and_every_failure_the_error_envelope(document):
    public = {
        route.path.split("/0000")[0] for route in api_routes() if EXPECTED[(route.name, route.method)].role == PUBLIC
    }
    for path, method, operation in _operations(document):
        codes = set(operation["responses"])
        assert "429" in codes, (method, path)
        if not any(path.startswith(prefix) for prefix in public):
            assert {"401", "403"} <= codes, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)
        if method in ("POST", "PUT", "PATCH"):
            assert {"400", "413", "415"} <= codes, (method, path)
        for code, response in operation["responses"].items():
            schema = response["content"]["application/json"]["schema"]
            if code.startswith("2"):
                body = _resolve(document, schema)
                variants = [_resolve(document, v) for v in body.get("oneOf", [body])]
                assert all(v["properties"]["success"]["type"] == "boolean" for v in variants), (method, path, code)
            else:
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)
    error = document["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"success", "error"}
    detail = _resolve(document, error["properties"]["error"])
    assert set(detail["properties"]) == {"code", "message", "details"}


def test_request_bodies_are_json(document):
    for path, method, operation in _operations(document):
        if "requestBody" in operation and path != "/api/metrics/prometheus":
            assert set(operation["requestBody"]["content"]) == {"application/json"}, (method, path)
    push = document["paths"]["/api/metrics/prometheus"]["post"]["requestBody"]["content"]
    assert set(push) == {"text/plain"}


@pytest.mark.parametrize("name", ["api-swagger", "api-redoc"])
def test_the_documentation_pages_load_only_local_assets(name, call):
    page = call("viewer", "GET", reverse(name))
    assert page.status_code == 200
    html = page.content.decode()
    external = [url for url in re.findall(r"""(?:src|href)=["']([^"']+)""", html) if "//" in url]
    assert external == [], external
    assets = re.findall(r"""(?:src|href)=["'](/static/[^"']+)""", html)
    assert assets
    for asset in assets:
        assert call(None, "GET", asset.split("?")[0]).status_code == 200, asset
