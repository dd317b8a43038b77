"""One Redis client per process for locks, debouncing and probes (the cache, the broker
and the channel layer keep their own connections)."""

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
