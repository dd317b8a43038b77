"""The role matrix, generated from the URL configuration: every route under /api/ and
each method it allows, called with no key, a key without a role, a viewer, operator and
admin key, and an admin's read-only key. A route missing from routes.EXPECTED fails."""

import pytest

from .conftest import CALLERS
from .routes import ADMIN, EXPECTED, OPERATOR, PUBLIC, VIEWER, Access, Route, api_routes

ROUTES = api_routes()
RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}


def expected_status(access: Access, caller: str | None, method: str) -> int:
    """What the caller gets for the probe: the route's status when it may call it, else
    401 without a key and 403 with one that is not enough."""
    if access.role == PUBLIC:
        return access.allowed
    if caller is None:
        return 401
    if caller == "admin-read-only":
        return access.allowed if method == "GET" else 403
    if caller == "norole" or RANK[caller] < RANK[access.role]:
        return 403
    return access.allowed


def test_every_declared_route_exists():
    found = {(route.name, route.method) for route in ROUTES}
    assert sorted(set(EXPECTED) - found) == [], "declared in routes.EXPECTED but not in the URL configuration"


def test_the_matrix_covers_every_api_route():
    assert len(ROUTES) >= 60
    undeclared = sorted({(r.name, r.method) for r in ROUTES} - set(EXPECTED))
    assert undeclared == [], "routes under /api/ whose access is not declared in tests/api/routes.py"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.name}")
def test_route_answers_each_caller_as_declared(route: Route, call):
    access = EXPECTED.get((route.name, route.method))
    assert access is not None, f"declare {route.method} {route.name} ({route.path}) in tests/api/routes.py"
    got, wanted = {}, {}
    for caller in CALLERS:
        response = call(caller, route.method, route.path, access.body)
        got[caller] = response.status_code
        wanted[caller] = expected_status(access, caller, route.method)
        if response.status_code >= 400:
            body = response.json()
            assert body["success"] is False and set(body["error"]) == {"code", "message", "details"}, body
    assert got == wanted


def test_bearer_header_is_the_same_key(call, caller_keys):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {caller_keys['operator']}")
    assert client.get("/api/status").status_code == 200
    assert client.post("/api/alert-rules", {}, format="json").status_code == 403  # an operator, not an admin
    client.credentials(HTTP_AUTHORIZATION="Bearer mon_not-a-key-at-all-1234567890")
    response = client.get("/api/status")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
