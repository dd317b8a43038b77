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
    """Readiness: the database and Redis both answer; 503 naming the one that does not.
    The reason is logged, not returned: the probe needs no login."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    ready = all(value == OK for value in checks.values())
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)


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
