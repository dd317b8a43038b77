"""API keys: generated with 192 bits of randomness and a recognisable `mon_` prefix,
stored as an HMAC-SHA256 under a key of their own, found by a short prefix."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from .models import ApiKey

KEY_PREFIX = "mon_"
PREFIX_LENGTH = 12


class ApiKeyError(Exception):
    pass


def _hmac_key() -> bytes:
    # A pepper of its own when set; otherwise one derived from SECRET_KEY for this purpose
    # only, so an API key hash never equals anything else keyed by SECRET_KEY.
    pepper = settings.MONITORING_API_KEY_PEPPER
    if pepper:
        return pepper.encode()
    return hashlib.sha256(b"monitoring-api-key-hmac:" + settings.SECRET_KEY.encode()).digest()


def hash_key(plain: str) -> str:
    return hmac.new(_hmac_key(), plain.encode(), hashlib.sha256).hexdigest()


def key_prefix(plain: str) -> str:
    return plain[:PREFIX_LENGTH]


@dataclass(frozen=True)
class NewKey:
    api_key: ApiKey
    plain: str


def create_api_key(
    *, user: User, name: str, expires_at: datetime | None = None, read_only: bool = False, plain: str | None = None
) -> NewKey:
    """Store a new key for `user` and return it with its plain text (shown once).
    `plain` lets an imported configuration keep its existing keys working."""
    if not name:
        raise ApiKeyError("an API key needs a name")
    if plain is None:
        plain = KEY_PREFIX + secrets.token_urlsafe(24)
    elif len(plain) < 16:
        raise ApiKeyError("an API key must be at least 16 characters long")
    with transaction.atomic():
        key = ApiKey.objects.create(
            user=user,
            name=name,
            prefix=key_prefix(plain),
            hashed_key=hash_key(plain),
            expires_at=expires_at,
            read_only=read_only,
        )
    return NewKey(api_key=key, plain=plain)


def find_api_key(plain: str, now: datetime | None = None) -> ApiKey | None:
    """The usable key matching `plain`, or None (unknown, revoked or expired)."""
    if not plain or len(plain) < PREFIX_LENGTH:
        return None
    digest = hash_key(plain)
    candidates = ApiKey.objects.usable(now).filter(prefix=key_prefix(plain)).select_related("user")
    for candidate in candidates:
        if hmac.compare_digest(candidate.hashed_key, digest):
            return candidate
    return None


def find_key_by_plain(plain: str) -> ApiKey | None:
    """Any stored key (usable or not) matching `plain`: for idempotent imports."""
    digest = hash_key(plain)
    for candidate in ApiKey.objects.filter(prefix=key_prefix(plain)):
        if hmac.compare_digest(candidate.hashed_key, digest):
            return candidate
    return None


def revoke_api_key(key: ApiKey, now: datetime | None = None) -> None:
    if key.revoked_at is None:
        key.revoked_at = now or timezone.now()
        key.save(update_fields=["revoked_at"])
