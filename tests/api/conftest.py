"""Fixtures of the API tests: callers of every kind, and a request helper that sends a
probe the way a client would."""

import json

import pytest
from rest_framework.test import APIClient

from monitoring.apikeys import create_api_key

# Who calls: no key, a user without a role, each role, and an admin's read-only key.
CALLERS = (None, "norole", "viewer", "operator", "admin", "admin-read-only")


@pytest.fixture
def caller_keys(api_keys, users) -> dict[str, str]:
    keys = dict(api_keys)
    keys["admin-read-only"] = create_api_key(user=users["admin"], name="admin-ro", read_only=True).plain
    return keys


@pytest.fixture
def call(caller_keys):
    """call(caller, method, path, body=None) -> response, with the caller's X-API-Key."""

    # One client for every call: each new client loads the middleware again, and
    # WhiteNoise then indexes every static file (~90 ms).
    client = APIClient()

    def send(caller: str | None, method: str, path: str, body: object = None, **extra):
        headers = {} if caller is None else {"HTTP_X_API_KEY": caller_keys[caller]}
        if body is None:
            return client.generic(method, path, **headers, **extra)
        return client.generic(method, path, json.dumps(body), content_type="application/json", **headers, **extra)

    return send
