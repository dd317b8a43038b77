"""Probes for load balancers and orchestrators: liveness and readiness, no auth."""

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse

from .redis import redis_client

log = logging.getLogger("monitoring")


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and Redis both answer."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready; say which
        checks["database"] = f"error: {exc.__class__.__name__}: {exc}"
    try:
        redis_client().ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}: {exc}"
    ready = all(value == "ok" for value in checks.values())
    if not ready:
        log.warning("readiness check failed: %s", checks)
    return JsonResponse({"status": "ready" if ready else "degraded", "checks": checks}, status=200 if ready else 503)
