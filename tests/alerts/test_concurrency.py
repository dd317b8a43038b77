"""Two evaluations of the same rule at once (the beat path and the on-ingest path, or one
task delivered twice) leave one open alert and one event per transition."""

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection, connections
from django.utils import timezone

from alerts.choices import OPEN_STATES
from alerts.evaluation import evaluate_rules
from alerts.models import Alert, AlertEvent
from tests.alerts.test_evaluation import make_rule, store_samples

THREADS = 4


@pytest.fixture
def shared_db(transactional_db: None, tmp_path: Path) -> Iterator[None]:
    """The configured database, for several threads at once. PostgreSQL as it is. SQLite's
    in-memory test database is shared-cache, whose table locks fail at once instead of
    waiting for the writer, so on SQLite the test runs on a file copy of it: WAL and
    BEGIN IMMEDIATE with a busy timeout, as the embedded set-up runs."""
    if connection.vendor != "sqlite" or not connection.is_in_memory_db():
        yield
        return
    path = tmp_path / "concurrency.sqlite3"
    connection.ensure_connection()
    with closing(sqlite3.connect(path)) as copy:
        connection.connection.backup(copy)
    original_settings, original_connection = connections.settings["default"], connections["default"]
    file_settings = {**original_settings, "NAME": str(path)}
    connections.settings["default"] = file_settings  # what each thread's new connection uses
    connections["default"] = original_connection.__class__(file_settings, "default")
    try:
        yield
    finally:
        connections["default"].close()
        connections["default"] = original_connection
        connections.settings["default"] = original_settings


def run_at_once(work: Callable[[int], object], threads: int = THREADS) -> list[object]:
    """Run `work(i)` in `threads` threads released together; re-raise the first error."""
    barrier = threading.Barrier(threads)
    results: list[object] = [None] * threads
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def transitions_of(alert: Alert) -> list[tuple[str, str]]:
    return [(e.from_state, e.to_state) for e in alert.events.order_by("at", "id")]


@pytest.mark.usefixtures("shared_db")
def test_concurrent_evaluations_write_each_transition_once() -> None:
    rule = make_rule("cpu", duration=60)
    t0 = timezone.now().replace(microsecond=0)
    # (seconds, gw-1's value, the hosts with an open alert afterwards); gw-2 stays at 99.
    steps = [(0, 95.0, ["gw-1", "gw-2"]), (30, 96.0, ["gw-1", "gw-2"]), (60, 97.0, ["gw-1", "gw-2"]),
             (90, 20.0, ["gw-2"]), (120, 95.0, ["gw-1", "gw-2"])]  # fmt: skip
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(t0 + timedelta(seconds=s), v) for s, v, _ in steps])
    store_samples("cpu_usage_percent", {"host": "gw-2"}, [(t0 + timedelta(seconds=s), 99.0) for s, _, _ in steps])

    for seconds, _, open_hosts in steps:
        now = t0 + timedelta(seconds=seconds)
        # Half the threads as the beat path (all rules), half as the on-ingest path (its id).
        run_at_once(lambda i, now=now: evaluate_rules([rule.id] if i % 2 else None, now=now))
        open_alerts = Alert.objects.filter(rule=rule, state__in=OPEN_STATES)
        assert sorted(a.labels["host"] for a in open_alerts) == open_hosts, seconds

    gw1 = list(Alert.objects.filter(labels__host="gw-1").order_by("id"))
    assert [transitions_of(a) for a in gw1] == [
        [("", "pending"), ("pending", "active"), ("active", "resolved")],
        [("", "pending")],
    ]
    [gw2] = Alert.objects.filter(labels__host="gw-2")
    assert transitions_of(gw2) == [("", "pending"), ("pending", "active")]
    assert AlertEvent.objects.count() == 6


@pytest.mark.usefixtures("shared_db")
def test_evaluations_at_different_times_at_once_never_double_an_alert() -> None:
    # The on-ingest path and a beat task that waited in the queue, with different `now`s.
    rule = make_rule("cpu")
    t0 = timezone.now().replace(microsecond=0)
    store_samples("cpu_usage_percent", {"host": "gw-1"}, [(t0, 95.0), (t0 + timedelta(seconds=10), 96.0)])
    nows: list[datetime] = [t0 + timedelta(seconds=i) for i in range(THREADS)]
    run_at_once(lambda i: evaluate_rules(now=nows[i]))
    [alert] = Alert.objects.filter(rule=rule)
    assert alert.state == "active"
    assert transitions_of(alert) == [("", "active")]
