"""Benchmark: what the pipeline watchdog costs, on a throwaway database of the configured
engine and the configured (or embedded) Redis.

    DATABASE_URL=postgres://... .venv/bin/python benchmarks/bench_watchdog.py [--batches 2000] [--rounds 20]

1. Ingestion with the shared ingestion counter (counted per process, one pipelined INCRBY +
   EXPIRE at most once a second) against ingestion with the counter paused, in the same run,
   interleaved (A B B A...),
   for device pushes of 10 samples and collector batches of 1,000 (target: under 5 % more).
   Also the counter's own cost per call, against one Redis round trip per batch.
2. One watchdog round (figures, storing them, evaluating the built-in rules) and the reading
   of the figures alone, with 500 rules and 2,000 pending notifications."""

import argparse
import math
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402, F401  (sets up Django)
from django.utils import timezone  # noqa: E402

from monitoring import watchdog  # noqa: E402
from monitoring.ingest import SampleIn, ingest_samples  # noqa: E402
from monitoring.schedule import sync_periodic_tasks  # noqa: E402

OVERHEAD_TARGET = 0.05


def ingest_run(batches: int, size: int, *, counter: bool, offset: int) -> float:
    """Seconds per batch of `size` samples (each batch a new timestamp of `size` series)."""
    watchdog._counter_paused_until = 0.0 if counter else math.inf
    start_ts = time.time() - 3600 + offset
    labels = [{"device_id": f"d-{i:04d}"} for i in range(size)]
    work = [[SampleIn("bench_temp", labels[i], float(i), start_ts + b * 0.001) for i in range(size)]
            for b in range(batches)]  # fmt: skip
    began = time.perf_counter()
    for batch in work:
        ingest_samples(batch)
    return (time.perf_counter() - began) / batches


def compare_counter(batches: int, size: int, turns: int = 8) -> None:
    ingest_run(20, size, counter=True, offset=0)  # series created, caches warm
    runs: dict[bool, list[float]] = {True: [], False: []}
    for turn in range(turns):  # A B B A A B B A: neither side always goes first
        counter = turn % 4 in (0, 3)
        runs[counter].append(ingest_run(batches, size, counter=counter, offset=(turn + 1) * 100))
    a, b = statistics.median(runs[True]), statistics.median(runs[False])
    overhead = a / b - 1
    verdict = "ok" if overhead <= OVERHEAD_TARGET else "OVER TARGET"
    print(
        f"ingest {size:>5} samples/batch: {b * 1000:7.3f} ms/batch without the counter, "
        f"{a * 1000:7.3f} ms with it: {overhead:+.1%} ({verdict}, target <= {OVERHEAD_TARGET:.0%}; "
        f"medians of {turns // 2} runs of {batches} batches each; runs ranged "
        f"{min(runs[False]) * 1000:.3f}-{max(runs[False]) * 1000:.3f} and "
        f"{min(runs[True]) * 1000:.3f}-{max(runs[True]) * 1000:.3f} ms)"
    )
    watchdog._counter_paused_until = 0.0


def time_counter_call(calls: int = 200_000) -> None:
    """The counter's own cost per batch, against the round trip it replaces."""
    watchdog._counter_paused_until = 0.0
    began = time.perf_counter()
    for _ in range(calls):
        watchdog.count_ingested(10)
    per_call = (time.perf_counter() - began) / calls
    client = watchdog.redis_client()
    began = time.perf_counter()
    for _ in range(2000):
        pipeline = client.pipeline(transaction=False)
        pipeline.incrby("mon:watchdog:bench", 10)
        pipeline.expire("mon:watchdog:bench", 60)
        pipeline.execute()
    round_trip = (time.perf_counter() - began) / 2000
    client.delete("mon:watchdog:bench")
    print(
        f"count_ingested: {per_call * 1e6:.2f} us per batch (one Redis round trip a second per process); "
        f"a round trip per batch would cost {round_trip * 1e6:.0f} us"
    )


def bench_round(rounds: int) -> None:
    from alerts.models import Alert, AlertRule
    from notifications.models import Notification, NotificationChannel

    sync_periodic_tasks()
    now = timezone.now()
    AlertRule.objects.bulk_create(
        AlertRule(name=f"r{n}", key=f"r{n}", metric="bench_temp", comparison=">", threshold=1e9,
                  evaluation_interval=60 * (n % 4), last_evaluated_at=now)
        for n in range(500)
    )  # fmt: skip
    channel = NotificationChannel.objects.create(name="b", key="b", kind="webhook", config={"url": "http://x/"})
    rule = AlertRule.objects.get(key="r0")
    alerts = Alert.objects.bulk_create(
        Alert(rule=rule, fingerprint=f"{n:032x}", labels={}, severity="high", state="resolved") for n in range(2000)
    )
    Notification.objects.bulk_create(
        Notification(alert=a, channel=channel, event="firing", idempotency_key=f"{a.pk:032x}",
                     next_attempt_at=now - timedelta(seconds=5))
        for a in alerts
    )  # fmt: skip
    watchdog.run_watchdog_round(beat_tick=True)  # built-in rules created
    reads, whole = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        watchdog.collect_figures(timezone.now())
        reads.append(time.perf_counter() - began)
        began = time.perf_counter()
        watchdog.run_watchdog_round(beat_tick=True)
        whole.append(time.perf_counter() - began)
    read_ms, round_ms = statistics.median(reads) * 1000, statistics.median(whole) * 1000
    print(
        f"watchdog, 500 rules, 2,000 pending notifications: reading the figures {read_ms:.1f} ms, "
        f"a whole round {round_ms:.1f} ms (medians of {rounds})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=2000, help="batches per measured run (e.g. 2000)")
    parser.add_argument("--rounds", type=int, default=20, help="watchdog rounds measured (e.g. 20)")
    args = parser.parse_args()
    with common.redis_running(), common.throwaway_database():
        from django.db import connection

        print(f"database: {connection.vendor}")
        time_counter_call()
        compare_counter(args.batches, 10)
        compare_counter(max(args.batches // 20, 20), 1000)
        bench_round(args.rounds)


if __name__ == "__main__":
    main()
