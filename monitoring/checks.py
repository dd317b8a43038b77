"""Start-up checks of the deployment: Redis must not evict the broker's queues. Registered as a
Django system check (`manage.py check`, runmonitor) and run by Celery workers and beat as
they start (config/celery.py), which log what it finds."""

import logging

import redis
from django.conf import settings
from django.core import checks

log = logging.getLogger("monitoring.checks")

# Policies that never evict a key without a TTL. The broker's queues and unacknowledged
# messages have none, so only volatile keys can go: cache entries and locks, which are
# rebuilt or re-taken (docs/decisions.md, "Operations").
SAFE_EVICTION_POLICIES = frozenset({"noeviction", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"})


def redis_eviction_policy(url: str) -> str | None:
    """Redis's maxmemory-policy at `url`; None when Redis is unreachable. Raises
    redis.ResponseError when the server refuses CONFIG (some managed services do)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return client.config_get("maxmemory-policy").get("maxmemory-policy")
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None  # unreachable: /readyz and the processes themselves say so
    finally:
        client.close()


def check_redis_eviction_policy(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Warn when Redis may evict keys without a TTL: the broker's queued tasks would vanish."""
    try:
        policy = redis_eviction_policy(settings.REDIS_URL)
    except redis.ResponseError as exc:
        return [
            checks.Info(
                f"Redis's maxmemory-policy could not be read ({exc}).",
                hint="Make sure it is noeviction (or volatile-*): other policies evict queued tasks.",
                id="monitoring.I001",
            )
        ]
    if policy is None or policy in SAFE_EVICTION_POLICIES:
        return []
    return [
        checks.Warning(
            f"Redis's maxmemory-policy is {policy}: when Redis reaches maxmemory it evicts the "
            "broker's queued and unacknowledged tasks, which are then lost without a trace.",
            hint="Set `maxmemory-policy noeviction` in redis.conf (or CONFIG SET maxmemory-policy noeviction).",
            id="monitoring.W001",
        )
    ]


def log_redis_eviction_policy(**kwargs) -> None:
    """Celery's start-up signals (worker and beat run no Django system checks): log the
    check's findings."""
    for message in check_redis_eviction_policy():
        level = logging.WARNING if message.level >= checks.WARNING else logging.INFO
        log.log(level, "%s: %s %s", message.id, message.msg, message.hint or "")
