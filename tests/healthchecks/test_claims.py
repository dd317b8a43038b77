"""Two dispatch ticks at once (two beat processes overlapping, or a tick and an on-demand
run) claim each due check once."""

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from django.db import connection, connections
from django.db.models import Q
from django.utils import timezone

from healthchecks.models import HealthCheck
from healthchecks.scheduling import due_filter
from healthchecks.services import claim_checks

THREADS = 4
CHECKS = 200


@pytest.fixture
def shared_db(transactional_db: None, tmp_path: Path) -> Iterator[None]:
    """The configured database for several threads. SQLite's in-memory test database is
    shared-cache, whose table locks fail at once instead of waiting, so on SQLite the test
    runs on a file copy in WAL mode with BEGIN IMMEDIATE, as the embedded set-up runs."""
    if connection.vendor != "sqlite" or not connection.is_in_memory_db():
        yield
        return
    path = tmp_path / "claims.sqlite3"
    connection.ensure_connection()
    with closing(sqlite3.connect(path)) as copy:
        connection.connection.backup(copy)
    original_settings, original_connection = connections.settings["default"], connections["default"]
    file_settings = {**original_settings, "NAME": str(path)}
    connections.settings["default"] = file_settings
    connections["default"] = original_connection.__class__(file_settings, "default")
    try:
        yield
    finally:
        connections["default"].close()
        connections["default"] = original_connection
        connections.settings["default"] = original_settings


def test_concurrent_claims_take_each_check_once(shared_db):
    HealthCheck.objects.bulk_create(
        HealthCheck(name=f"c{i}", key=f"c{i}", kind="tcp", config={"host": "127.0.0.1", "port": 9})
        for i in range(CHECKS)
    )
    now = timezone.now()
    barrier = threading.Barrier(THREADS)
    claimed: list[list[int]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []

    def claim(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            # Each thread claims in small slices, so the threads interleave many times.
            due = due_filter(now, claim_timeout=600)
            while HealthCheck.objects.filter(due).exists():
                _, ids = claim_checks(condition=due, now=now, limit=7)
                claimed[i].extend(ids)
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    everything = [pk for ids in claimed for pk in ids]
    assert len(everything) == CHECKS == len(set(everything))
    assert sum(1 for ids in claimed if ids) > 1  # they did run side by side
    assert not HealthCheck.objects.filter(Q(running_since__isnull=True) | Q(claim_token__isnull=True)).exists()
