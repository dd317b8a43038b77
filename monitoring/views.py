"""Probes for load balancers and orchestrators: liveness and readiness, no auth."""

import logging

import redis
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from .redis import redis_client

log = logging.getLogger("probes")

OK = "ok"


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers (and touches nothing else, so a slow database never
    gets a healthy web process restarted)."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 "ready" when the database and Redis answer; 200 "degraded" when only
    Redis does not (pages and the API still answer from the database, pushes are stored, so
    the web process stays in rotation); 503 "not ready" when the database does not. The
    reason is logged, not returned: the probe needs no login."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    if checks["database"] != OK:
        status, code = "not ready", 503
    elif checks["redis"] != OK:
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    return JsonResponse({"status": status, "checks": checks}, status=code)


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        log.warning("readiness: database unreachable: %s: %s", exc.__class__.__name__, exc)
        return "unreachable"
    return OK


def _check_redis() -> str:
    try:
        redis_client().ping()
    except (redis.RedisError, OSError) as exc:
        log.warning("readiness: redis unreachable: %s: %s", exc.__class__.__name__, exc)
        return "unreachable"
    return OK
