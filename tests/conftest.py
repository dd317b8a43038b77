"""Shared fixtures: the embedded Redis for the default set-up, users of each role,
API keys and an API client."""

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from rest_framework.test import APIClient

from monitoring.apikeys import create_api_key
from monitoring.choices import Role
from monitoring.embedded_redis import start_embedded_redis, stop_embedded_redis


@pytest.fixture(scope="session", autouse=True)
def redis_server():
    """The embedded default runs its own Redis, as `make run` does; with REDIS_URL set
    the tests use that server."""
    process = start_embedded_redis(settings.EMBEDDED_REDIS_SOCKET) if settings.EMBEDDED_REDIS else None
    yield settings.REDIS_URL
    stop_embedded_redis(process)


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2's many rounds cost over a second per user here; tests check no password's strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(db):
    def make(username: str = "user", role: Role | str | None = Role.VIEWER, **extra) -> User:
        user = User.objects.create_user(username=username, password="correct horse battery", **extra)
        if role:
            user.groups.add(Group.objects.get(name=Role(role).value))
        return user

    return make


@pytest.fixture
def users(make_user) -> dict[str, User]:
    """One user per role, plus one without any role."""
    return {
        "viewer": make_user("viewer", Role.VIEWER),
        "operator": make_user("operator", Role.OPERATOR),
        "admin": make_user("admin", Role.ADMIN, is_staff=True),
        "norole": make_user("norole", None),
    }


@pytest.fixture
def api_keys(users) -> dict[str, str]:
    """A plain API key per role."""
    return {role: create_api_key(user=user, name=f"{role}-key").plain for role, user in users.items()}


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def client_for(api_keys):
    """An API client that sends the key of the given role ("viewer", "operator", "admin"),
    or no key at all for None."""

    def make(role: str | None) -> APIClient:
        client = APIClient()
        if role is not None:
            client.credentials(HTTP_X_API_KEY=api_keys[role])
        return client

    return make


@pytest.fixture
def make_series(db):
    """A stored series with the given (epoch ms, value) samples; its last value is the
    newest sample's. Bypasses ingestion, so query tests control every row."""
    from uuid import uuid4

    from monitoring import storage
    from monitoring.models import Sample, Series

    def make(metric: str, labels: dict | None = None, samples=()) -> Series:
        samples = sorted(samples)
        last_ts, last_value = samples[-1] if samples else (None, None)
        if storage.is_postgres():
            storage.ensure_partitions({storage.day_of(ts) for ts, _ in samples})
        series = Series.objects.create(
            name=metric, labels=labels or {}, fingerprint=uuid4().hex, last_value=last_value, last_ts=last_ts
        )
        Sample.objects.bulk_create(Sample(series=series, ts=ts, value=value) for ts, value in samples)
        return series

    return make
