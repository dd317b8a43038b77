"""Every route under /api/, found by walking the URL configuration, and the access that
each route and method is declared to have. The role matrix (test_roles.py) fails for a
route that is missing here, so a route added later must be declared before it passes."""

from dataclasses import dataclass
from uuid import UUID

from django.urls import URLPattern, URLResolver, get_resolver, reverse

METHODS = ("get", "post", "put", "patch", "delete")
# Path parameters of the probe requests: ids that exist nowhere, so an allowed caller
# gets 404 and nothing is changed.
MISSING_KWARGS = {"pk": "999999", "target_id": "999999", "ping_uuid": UUID("00000000-0000-4000-8000-000000000000")}


@dataclass(frozen=True)
class Route:
    name: str
    method: str  # upper case
    path: str  # a concrete URL for the probe
    callback: object


def _kwarg_names(pattern) -> list[str]:
    return list(pattern.pattern.regex.groupindex)  # both path() and re_path() patterns


def _methods(callback) -> list[str]:
    actions = getattr(callback, "actions", None)
    if actions is not None:  # a DRF viewset bound to {method: action}
        # DRF adds "head" (GET without a body) to the dict at the first GET it serves.
        return sorted(method.upper() for method in actions if method in METHODS)
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view_class is None:
        raise AssertionError(f"{callback!r} under /api/ is not a class-based view: declare how it is protected")
    return sorted(method.upper() for method in METHODS if hasattr(view_class, method))


def _walk(patterns, prefix: str, namespace: str):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), namespace)
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern).lstrip("^"), pattern


def api_routes() -> list[Route]:
    """Each (route, method) of the URL configuration under /api/."""
    routes = []
    for full, pattern in _walk(get_resolver().url_patterns, "", ""):
        if not full.startswith("api/"):
            continue
        assert pattern.name, f"the route {full!r} has no name"
        kwargs = {name: MISSING_KWARGS[name] for name in _kwarg_names(pattern)}
        path = reverse(pattern.name, kwargs=kwargs)
        for method in _methods(pattern.callback):
            routes.append(Route(pattern.name, method, path, pattern.callback))
    return routes


@dataclass(frozen=True)
class Access:
    """Who may call a route: `public` (no key needed), `viewer`, `operator` or `admin`;
    `allowed` is the status of the probe request for a caller who may (a list answers
    200, a missing id 404, an empty body 400), `body` the probe's JSON body."""

    role: str
    allowed: int
    body: object = None


PUBLIC, VIEWER, OPERATOR, ADMIN = "public", "viewer", "operator", "admin"

# (route name, method) -> Access. Declare every new route here.
EXPECTED: dict[tuple[str, str], Access] = {
    ("monitoring-status", "GET"): Access(VIEWER, 200),
    ("monitoring-audit-log", "GET"): Access(ADMIN, 200),
    ("monitoring-device-register", "POST"): Access(VIEWER, 400, {}),  # a device's key: any role
    ("monitoring-discovered-list", "GET"): Access(VIEWER, 200),
    ("monitoring-discovered-detail", "GET"): Access(VIEWER, 404),
    ("monitoring-discovered-approve", "POST"): Access(ADMIN, 404),
    ("monitoring-discovered-reject", "POST"): Access(ADMIN, 404),
    ("monitoring-target-list", "GET"): Access(VIEWER, 200),
    ("monitoring-target-list", "POST"): Access(ADMIN, 400, {}),
    ("monitoring-target-detail", "GET"): Access(VIEWER, 404),
    ("monitoring-target-detail", "PUT"): Access(ADMIN, 404, {}),
    ("monitoring-target-detail", "PATCH"): Access(ADMIN, 404, {}),
    ("monitoring-target-detail", "DELETE"): Access(ADMIN, 404),
    ("healthchecks-target-health", "GET"): Access(VIEWER, 404),
    ("monitoring-apikey-list", "GET"): Access(ADMIN, 200),
    ("monitoring-apikey-list", "POST"): Access(ADMIN, 400, {}),
    ("monitoring-apikey-detail", "GET"): Access(ADMIN, 404),
    ("monitoring-apikey-detail", "PATCH"): Access(ADMIN, 404, {}),
    ("monitoring-apikey-detail", "DELETE"): Access(ADMIN, 404),
    ("monitoring-metrics", "GET"): Access(VIEWER, 200),
    ("monitoring-metrics", "POST"): Access(VIEWER, 200, {"samples": []}),  # devices push with viewer keys
    ("monitoring-metrics-push-prometheus", "POST"): Access(VIEWER, 400, {}),
    ("alerts-alert-list", "GET"): Access(VIEWER, 200),
    ("alerts-alert-detail", "GET"): Access(VIEWER, 404),
    ("alerts-alert-acknowledge", "POST"): Access(OPERATOR, 404, {"acknowledged_by": "admin"}),
    ("alerts-alert-resolve", "POST"): Access(OPERATOR, 404, {"resolved_by": "admin"}),
    ("alerts-rule-list", "GET"): Access(VIEWER, 200),
    ("alerts-rule-list", "POST"): Access(ADMIN, 400, {}),
    ("alerts-rule-detail", "GET"): Access(VIEWER, 404),
    ("alerts-rule-detail", "PUT"): Access(ADMIN, 404, {}),
    ("alerts-rule-detail", "PATCH"): Access(ADMIN, 404, {}),
    ("alerts-rule-detail", "DELETE"): Access(ADMIN, 404),
    ("alerts-rule-silence", "POST"): Access(OPERATOR, 404, {"duration_hours": 1}),
    ("alerts-rule-enable", "POST"): Access(ADMIN, 404),
    ("alerts-rule-disable", "POST"): Access(ADMIN, 404),
    ("alerts-silence-list", "GET"): Access(VIEWER, 200),
    ("alerts-silence-list", "POST"): Access(OPERATOR, 400, {}),
    ("alerts-silence-detail", "GET"): Access(VIEWER, 404),
    ("alerts-silence-detail", "DELETE"): Access(OPERATOR, 404),
    ("alerts-escalation-policy-list", "GET"): Access(VIEWER, 200),
    ("alerts-escalation-policy-list", "POST"): Access(ADMIN, 400, {}),
    ("alerts-escalation-policy-detail", "GET"): Access(VIEWER, 404),
    ("alerts-escalation-policy-detail", "PUT"): Access(ADMIN, 404, {}),
    ("alerts-escalation-policy-detail", "PATCH"): Access(ADMIN, 404, {}),
    ("alerts-escalation-policy-detail", "DELETE"): Access(ADMIN, 404),
    ("healthchecks-check-list", "GET"): Access(VIEWER, 200),
    ("healthchecks-check-list", "POST"): Access(ADMIN, 400, {}),
    ("healthchecks-check-run", "POST"): Access(OPERATOR, 200, {}),  # no check enabled: nothing to run
    ("healthchecks-check-detail", "GET"): Access(VIEWER, 404),
    ("healthchecks-check-detail", "PUT"): Access(ADMIN, 404, {}),
    ("healthchecks-check-detail", "PATCH"): Access(ADMIN, 404, {}),
    ("healthchecks-check-detail", "DELETE"): Access(ADMIN, 404),
    # Devices ping without a key: the check's uuid is the secret.
    ("healthchecks-heartbeat-ping", "GET"): Access(PUBLIC, 404),
    ("healthchecks-heartbeat-ping", "POST"): Access(PUBLIC, 404),
    ("healthchecks-heartbeat-fail", "GET"): Access(PUBLIC, 404),
    ("healthchecks-heartbeat-fail", "POST"): Access(PUBLIC, 404),
    ("healthchecks-heartbeat-start", "GET"): Access(PUBLIC, 404),
    ("healthchecks-heartbeat-start", "POST"): Access(PUBLIC, 404),
    ("notifications-notification-list", "GET"): Access(VIEWER, 200),
    ("notifications-notification-test", "POST"): Access(OPERATOR, 400, {"channels": ["email"]}),  # none exists
    ("notifications-channel-list", "GET"): Access(VIEWER, 200),
    ("notifications-channel-list", "POST"): Access(ADMIN, 400, {}),
    ("notifications-channel-detail", "GET"): Access(VIEWER, 404),
    ("notifications-channel-detail", "PUT"): Access(ADMIN, 404, {}),
    ("notifications-channel-detail", "PATCH"): Access(ADMIN, 404, {}),
    ("notifications-channel-detail", "DELETE"): Access(ADMIN, 404),
    ("api-schema", "GET"): Access(VIEWER, 200),
    ("api-swagger", "GET"): Access(VIEWER, 200),
    ("api-redoc", "GET"): Access(VIEWER, 200),
}
