"""DRF authentication by API key: `X-API-Key: <key>` or `Authorization: Bearer <key>`."""

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from .apikeys import find_api_key

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


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        plain = key_from_request(request)
        if plain is None:
            return None
        key = find_api_key(plain)
        if key is None or not key.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            type(key).objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
        return key.user, key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to a request without credentials.
        return 'X-API-Key realm="api"'
