"""Fixtures of the notification tests: the stand-in servers, an injected clock, and
factories for channels, rules and firing alerts."""

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from django.db import connection, connections

from alerts.models import AlertRule, EscalationPolicy, EscalationStep
from monitoring.redis import redis_client
from notifications.models import NotificationChannel
from notifications.ratelimit import KEY_PREFIX
from notifications.secrets import set_channel_secrets, split_channel_settings

from .helpers import FakeClock
from .servers import Receiver, SmtpServer, make_certificate


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """Buckets and Retry-After pauses are keyed by channel id, which tests reuse."""
    client = redis_client()
    for key in client.scan_iter(f"{KEY_PREFIX}:*"):
        client.delete(key)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def receiver(clock) -> Iterator[Receiver]:
    server = Receiver(clock)
    yield server
    server.close()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server(certificate) -> Iterator[SmtpServer]:
    server = SmtpServer(certificate)
    yield server
    server.close()


@pytest.fixture
def make_channel(db):
    def make(kind: str, key: str | None = None, *, rate_limit_per_minute=None, template="", enabled=True, **settings):
        config, secrets = split_channel_settings(kind, settings)
        channel = NotificationChannel.objects.create(
            name=key or kind,
            key=key or kind,
            kind=kind,
            config=config,
            rate_limit_per_minute=rate_limit_per_minute,
            template=template,
            enabled=enabled,
        )
        if secrets:
            set_channel_secrets(channel, secrets)
            channel.save(update_fields=["secrets"])
        return channel

    return make


@pytest.fixture
def webhook_channel(make_channel, receiver):
    def make(key: str = "webhook", **settings):
        return make_channel("webhook", key, **{"url": f"{receiver.url}/hook", "timeout": 2, **settings})

    return make


@pytest.fixture
def make_rule(db):
    def make(key: str = "high_cpu", *, channels=(), severity="high", policy=None, **fields) -> AlertRule:
        rule = AlertRule.objects.create(
            name=fields.pop("name", key.replace("_", " ").title()),
            key=key,
            metric=fields.pop("metric", "cpu_usage_percent"),
            comparison=">",
            threshold=fields.pop("threshold", 90),
            severity=severity,
            escalation_policy=policy,
            **fields,
        )
        rule.channels.set(channels)
        return rule

    return make


@pytest.fixture
def make_policy(db):
    def make(key: str = "page", *, steps, severity="", repeat=False) -> EscalationPolicy:
        policy = EscalationPolicy.objects.create(name=key, key=key, severity=severity, repeat=repeat)
        for order, (after, channels) in enumerate(steps):
            step = EscalationStep.objects.create(policy=policy, order=order, after_minutes=after)
            step.channels.set(channels)
        return policy

    return make


@pytest.fixture
def shared_db(transactional_db: None, tmp_path: Path) -> Iterator[Path | None]:
    """The configured database, committed, for threads and subprocesses. PostgreSQL as it
    is; SQLite's in-memory test database is copied to a file (WAL, busy timeout), which
    is what a second process can open. Yields the file on SQLite, else None."""
    if connection.vendor != "sqlite" or not connection.is_in_memory_db():
        yield None
        return
    path = tmp_path / "shared.sqlite3"
    connection.ensure_connection()
    with closing(sqlite3.connect(path)) as copy:
        connection.connection.backup(copy)
    with closing(sqlite3.connect(path)) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
    original_settings, original_connection = connections.settings["default"], connections["default"]
    file_settings = {**original_settings, "NAME": str(path)}
    connections.settings["default"] = file_settings
    connections["default"] = original_connection.__class__(file_settings, "default")
    try:
        yield path
    finally:
        connections["default"].close()
        connections["default"] = original_connection
        connections.settings["default"] = original_settings
