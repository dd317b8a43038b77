"""The shared cache, failing open: Django's Redis cache whose reads miss and whose writes are
dropped while Redis is away, so throttles, login-failure counts and claims degrade instead of
turning every page and API call into a 500 (docs/decisions.md, "Operations")."""

import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache

log = logging.getLogger("cache")

# One warning per this many seconds per process while Redis is away, not one per call.
WARN_EVERY_S = 10.0
_last_warning = [float("-inf")]


def _warn(operation: str, exc: BaseException) -> None:
    if time.monotonic() - _last_warning[0] >= WARN_EVERY_S:
        _last_warning[0] = time.monotonic()
        log.warning("cache unavailable (%s failed open): %s: %s", operation, exc.__class__.__name__, exc)


def _fail_open(method: Callable, fallback: Callable[..., Any]) -> Callable:
    @wraps(method)
    def wrapper(self: RedisCache, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (redis.RedisError, OSError) as exc:
            _warn(method.__name__, exc)
            return fallback(*args, **kwargs)

    return wrapper


def _missing_key(key: str, *args: Any, **kwargs: Any) -> None:
    # incr/decr of a key the cache does not have: what callers already handle.
    raise ValueError(f"Key '{key}' not found (cache unavailable)")


class FailOpenRedisCache(RedisCache):
    """RedisCache whose every operation answers as an empty cache when Redis is away: `get`
    the default, `add` False (nobody claims), writes nothing, `incr` "key not found"."""

    get = _fail_open(RedisCache.get, lambda key, default=None, version=None: default)
    get_many = _fail_open(RedisCache.get_many, lambda keys, version=None: {})
    has_key = _fail_open(RedisCache.has_key, lambda *args, **kwargs: False)
    add = _fail_open(RedisCache.add, lambda *args, **kwargs: False)
    set = _fail_open(RedisCache.set, lambda *args, **kwargs: None)
    set_many = _fail_open(RedisCache.set_many, lambda data, *args, **kwargs: list(data))
    touch = _fail_open(RedisCache.touch, lambda *args, **kwargs: False)
    delete = _fail_open(RedisCache.delete, lambda *args, **kwargs: False)
    delete_many = _fail_open(RedisCache.delete_many, lambda *args, **kwargs: None)
    incr = _fail_open(RedisCache.incr, _missing_key)
    decr = _fail_open(RedisCache.decr, _missing_key)
    clear = _fail_open(RedisCache.clear, lambda *args, **kwargs: False)
