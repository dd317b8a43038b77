"""Who is calling the API and how often: authentication by API key (`X-API-Key: <key>` or
`Authorization: Bearer <key>`) and the throttles keyed on it. Kept free of
rest_framework.views, which imports the classes named in settings while it loads."""

import logging
import time
from datetime import timedelta

from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from rest_framework import authentication, exceptions, throttling
from rest_framework.settings import api_settings

from .apikeys import find_api_key
from .audit import client_ip
from .models import ApiKey

log = logging.getLogger("api")

# last_used_at is written at most this often per key, so reads cost no write each.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def key_from_request(request) -> str | None:
    header = request.META.get("HTTP_X_API_KEY")
    if header:
        return header.strip()
    auth = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class FailedKeyLimiter:
    """Wrong API keys per client address, counted in the shared cache over a fixed window
    (the `auth_failures` throttle rate). Past the budget the address is refused before any
    key is looked up, so keys cannot be guessed at the speed of the server. If the cache
    is unreachable the limiter lets requests through: an outage of Redis must not lock
    every device out."""

    scope = "auth_failures"

    def __init__(self, request) -> None:
        self.ident = client_ip(request._request if hasattr(request, "_request") else request) or "unknown"
        rate = (api_settings.DEFAULT_THROTTLE_RATES or {}).get(self.scope)
        self.limit, self.window = throttling.SimpleRateThrottle.parse_rate(None, rate) if rate else (None, None)

    def _key(self, now: float) -> str:
        return f"throttle_{self.scope}_{self.ident}_{int(now // self.window)}"

    def retry_after(self) -> int | None:
        """Seconds until this address may try again, or None when it is within budget."""
        if not self.limit:
            return None
        now = time.time()
        try:
            failures = cache.get(self._key(now), 0)
        except Exception as exc:  # noqa: BLE001 - any cache failure: fail open, said in the log
            log.warning("auth failure limiter: cache unavailable: %s", exc)
            return None
        if failures < self.limit:
            return None
        return max(1, int(self.window - now % self.window))

    def record_failure(self) -> None:
        if not self.limit:
            return
        key = self._key(time.time())
        try:
            cache.add(key, 0, self.window)
            cache.incr(key)
        except Exception as exc:  # noqa: BLE001 - as above
            log.warning("auth failure limiter: cache unavailable: %s", exc)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        plain = key_from_request(request)
        if plain is None:
            return None
        limiter = FailedKeyLimiter(request)
        wait = limiter.retry_after()
        if wait is not None:
            raise exceptions.Throttled(wait=wait, detail="Too many requests with a wrong API key from this address.")
        key = find_api_key(plain)
        if key is None or not key.user.is_active:
            limiter.record_failure()
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            type(key).objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
        return key.user, key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to a request without credentials.
        return 'X-API-Key realm="api"'


# --- Throttling: per API key (or logged-in user) and per client address for anonymous calls,
# counted in the shared cache (Redis) so every web process sees the same counts.


class _ScopedRateMixin:
    """The rate of the view's `throttle_scope` (ingestion and heartbeats have their own,
    higher budgets), else of the class's own scope; read per request, since DRF reads
    rates once when its module is imported and a rate changed in settings (tests, a
    reload) should take effect."""

    default_scope: str

    def __init__(self) -> None:
        # SimpleRateThrottle reads its rate here, before the view (and so the scope) is known.
        pass

    def allow_request(self, request, view) -> bool:
        self.scope = getattr(view, "throttle_scope", None) or self.default_scope
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_rate(self) -> str | None:
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        if self.scope not in rates:
            raise ImproperlyConfigured(f"No throttle rate for scope {self.scope!r}.")
        return rates[self.scope]


class AnonThrottle(_ScopedRateMixin, throttling.AnonRateThrottle):
    """Anonymous callers, by client address (only views that let them in are reached)."""

    default_scope = "anon"


class ApiKeyThrottle(_ScopedRateMixin, throttling.SimpleRateThrottle):
    """Authenticated callers: one budget per API key, or per user for session logins."""

    default_scope = "key"

    def get_cache_key(self, request, view) -> str | None:
        if isinstance(request.auth, ApiKey):
            ident = f"key{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user{request.user.pk}"
        else:
            return None  # anonymous: AnonThrottle counts those
        return self.cache_format % {"scope": self.scope, "ident": ident}
