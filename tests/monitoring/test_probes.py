"""The load balancer probes: /healthz (liveness) and /readyz (database and Redis)."""

import json
import os
import socket
import subprocess
import sys

import pytest
from django.conf import settings
from django.test import Client, override_settings

from monitoring.redis import redis_client


@pytest.fixture
def anonymous() -> Client:
    return Client()


@pytest.fixture
def dead_redis_url():
    """A TCP port that is bound but not listening: connecting is refused at once."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        yield f"redis://127.0.0.1:{blocker.getsockname()[1]}/0"


@pytest.fixture
def fresh_redis_client():
    """redis_client() caches one client per process: forget it around a settings change."""
    redis_client.cache_clear()
    yield
    redis_client.cache_clear()


def test_healthz_answers_without_login(anonymous):
    response = anonymous.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_database_and_redis_answer(anonymous, fresh_redis_client):
    response = anonymous.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


@pytest.mark.django_db
def test_readyz_is_degraded_but_ready_when_only_redis_is_unreachable(
    anonymous, dead_redis_url, fresh_redis_client, caplog
):
    with override_settings(REDIS_URL=dead_redis_url):
        response = anonymous.get("/readyz")

    # Pages and the API still answer from the database: the web stays in rotation.
    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "checks": {"database": "ok", "redis": "unreachable"}}
    # The reason goes to the log, under the probes component, not to the anonymous caller.
    assert any(r.name == "probes" and "redis unreachable" in r.getMessage() for r in caplog.records)
    assert "Connection" not in response.content.decode()


def test_readyz_names_the_database_when_it_is_unreachable(dead_redis_url):
    # A real unreachable database needs a process of its own whose DATABASE_URL points at a
    # port where nothing listens; its Redis is the one this test run uses.
    port = dead_redis_url.rsplit(":", 1)[1].split("/")[0]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/nowhere",
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    script = (
        "import django, json; django.setup(); from django.test import Client; "
        "r = Client().get('/readyz'); print(json.dumps([r.status_code, r.json()]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    status, body = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == 503
    assert body["checks"] == {"database": "unreachable", "redis": "ok"}
