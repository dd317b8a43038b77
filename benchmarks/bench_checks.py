"""Benchmark: health checks at fleet scale, through the real path (dispatch claims the due
checks and queues batches on the broker; workers take the batches, probe on asyncio,
record results and ingest metrics), on a throwaway database of the configured engine.

    .venv/bin/python benchmarks/bench_checks.py [--checks 1000] [--workers 2] [--timeout 2]

1. `--checks` HTTP checks against a local server that answers after 200 ms: the time from
   the dispatch tick to the last result recorded (target: under 10 s).
2. `--checks` checks against a port that accepts and never answers, with `--timeout`:
   each must end as a timeout within its timeout + 1 s; meanwhile 100 HTTP checks in
   another worker finish as fast as they do alone (the flood delays no other work).

Workers are threads here, each running the batches it takes as a Celery worker process
would (its own event loop and database connection); the servers run in a child process."""

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from common import redis_running, throwaway_database  # noqa: E402  (shared with every benchmark)
from django.conf import settings  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.db.models import Q  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from healthchecks.models import HealthCheck, HealthCheckResult  # noqa: E402
from healthchecks.services import claim_checks, dispatch_due_checks, queue_check_batch  # noqa: E402
from healthchecks.tasks import run_checks_task  # noqa: E402
from monitoring.redis import redis_client  # noqa: E402

# --- the servers (a child process, so they do not share the benchmark's CPU time slice) ----------


async def _slow_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.2)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nhealthy")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accepts, reads whatever comes, never answers
    writer.close()


def _serve(ports: multiprocessing.Queue) -> None:
    async def main() -> None:
        slow = await asyncio.start_server(_slow_http, "127.0.0.1", 0, backlog=4096)
        hole = await asyncio.start_server(_black_hole, "127.0.0.1", 0, backlog=4096)
        ports.put((slow.sockets[0].getsockname()[1], hole.sockets[0].getsockname()[1]))
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def servers() -> Iterator[tuple[int, int]]:
    ports: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    process.start()
    try:
        yield ports.get(timeout=10)
    finally:
        process.terminate()
        process.join(5)


# --- the system under test -----------------------------------------------------------------------


def queued_batches(queue_name: str) -> list[dict]:
    """The kwargs of the run_checks_task messages that dispatch put on `queue_name`."""
    client = redis_client()
    raw = client.lrange(queue_name, 0, -1)
    client.delete(queue_name)
    return [json.loads(base64.b64decode(json.loads(message)["body"]))[1] for message in reversed(raw)]


def run_workers(batches: list[dict], workers: int) -> float:
    """Run the batches on `workers` threads, each taking the next batch when free (as Celery
    workers with prefetch 1 do). Returns the wall time."""
    pending: queue.Queue = queue.Queue()
    for batch in batches:
        pending.put(batch)

    def work() -> None:
        try:
            while True:
                try:
                    batch = pending.get_nowait()
                except queue.Empty:
                    return
                run_checks_task(**batch)
        finally:
            connections.close_all()

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def make_checks(prefix: str, count: int, config: dict, timeout: int) -> list[int]:
    HealthCheck.objects.bulk_create(
        HealthCheck(name=f"{prefix} {i}", key=f"{prefix}-{i}", kind="http", config=config, timeout=timeout)
        for i in range(count)
    )
    return list(HealthCheck.objects.filter(key__startswith=f"{prefix}-").values_list("pk", flat=True))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def bench_slow_server(port: int, checks: int, workers: int) -> None:
    make_checks("slow", checks, {"url": f"http://127.0.0.1:{port}/health", "expected_content": "healthy"}, 10)
    queue_name = f"bench-{uuid.uuid4().hex[:8]}"
    with override_settings(HEALTHCHECK_QUEUE=queue_name):
        started = time.perf_counter()
        summary = dispatch_due_checks(now=timezone.now())
        dispatched = time.perf_counter() - started
        batches = queued_batches(queue_name)
        ran = run_workers(batches, workers)
    total = time.perf_counter() - started
    results = list(HealthCheckResult.objects.filter(health_check__key__startswith="slow-"))
    healthy = sum(1 for r in results if r.status == "healthy")
    times = [r.response_time for r in results]
    print(f"1. {checks} HTTP checks, server answering after 200 ms, {workers} workers:")
    print(f"   {summary.line()} in {dispatched:.2f} s")
    print(f"   dispatch to last result recorded: {total:.2f} s (workers {ran:.2f} s)  -> target < 10 s")
    print(
        f"   {healthy}/{len(results)} healthy; response time p50 {percentile(times, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(times, 0.99) * 1000:.0f} ms"
    )
    HealthCheck.objects.filter(key__startswith="slow-").delete()


def bench_black_hole(slow_port: int, hole_port: int, checks: int, timeout: int) -> None:
    make_checks("hole", checks, {"url": f"http://127.0.0.1:{hole_port}/"}, timeout)
    others = 100
    make_checks("other", others, {"url": f"http://127.0.0.1:{slow_port}/health"}, 10)

    def run_others() -> float:
        HealthCheck.objects.filter(key__startswith="other-").update(next_due_at=None, running_since=None)
        queue_name = f"bench-{uuid.uuid4().hex[:8]}"
        with override_settings(HEALTHCHECK_QUEUE=queue_name):
            token, ids = claim_checks(condition=Q(key__startswith="other-"), now=timezone.now())
            queue_check_batch(token, ids)
            return run_workers(queued_batches(queue_name), 1)

    # Alone first: the reference for "delays no other work".
    HealthCheck.objects.filter(key__startswith="hole-").update(enabled=False)
    alone = run_others()
    HealthCheck.objects.filter(key__startswith="hole-").update(enabled=True)
    HealthCheck.objects.filter(key__startswith="other-").update(enabled=False)

    queue_name = f"bench-{uuid.uuid4().hex[:8]}"
    with override_settings(HEALTHCHECK_QUEUE=queue_name, HEALTHCHECK_CONCURRENCY=checks, HEALTHCHECK_BATCH_SIZE=checks):
        started = time.perf_counter()
        dispatch_due_checks(now=timezone.now())
        batches = queued_batches(queue_name)
        flood = threading.Thread(target=run_workers, args=(batches, 1))
        flood.start()
        time.sleep(0.5)  # the flood is in the air: every black-hole connection is open
        HealthCheck.objects.filter(key__startswith="other-").update(enabled=True)
        during = run_others()
        flood.join()
        total = time.perf_counter() - started
    results = list(HealthCheckResult.objects.filter(health_check__key__startswith="hole-"))
    durations = [r.response_time for r in results]
    timeouts = sum(1 for r in results if r.status == "critical" and "timed out" in r.message)
    within = sum(1 for d in durations if d <= timeout + 1)
    print(f"2. {checks} checks against a port that accepts and never answers, timeout {timeout} s:")
    print(f"   {timeouts}/{len(results)} ended as a timeout; {within}/{len(results)} within timeout + 1 s")
    print(
        f"   each check's duration: min {min(durations):.2f} s, p50 {percentile(durations, 0.5):.2f} s, "
        f"max {max(durations):.2f} s; the whole flood {total:.2f} s"
    )
    print(f"   {others} HTTP checks in another worker: {alone:.2f} s alone, {during:.2f} s during the flood")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (threads here), as runmonitor starts")
    parser.add_argument("--timeout", type=int, default=2, help="the black-hole checks' timeout, seconds")
    args = parser.parse_args()
    print(
        f"database: {connection.vendor}; concurrency {settings.HEALTHCHECK_CONCURRENCY} per worker, batches of "
        f"{settings.HEALTHCHECK_BATCH_SIZE}, jitter {settings.HEALTHCHECK_JITTER_SECONDS} s"
    )
    with servers() as (slow_port, hole_port), redis_running(), throwaway_database():
        bench_slow_server(slow_port, args.checks, args.workers)
        bench_black_hole(slow_port, hole_port, args.checks, args.timeout)


if __name__ == "__main__":
    main()
