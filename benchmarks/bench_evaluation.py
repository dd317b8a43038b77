"""Benchmark: one evaluation round of 1,000 alert rules over 10,000 series, against the
configured database engine (a throwaway database is created and dropped).

    .venv/bin/python benchmarks/bench_evaluation.py [--rules 1000] [--series 10000] [--rounds 5]

Prints the time of a steady round (new samples every round, 1,000 open alerts' values
refreshed, no state change) against a bare baseline, the SQL reads alone (instant vectors
of every metric and the open alerts) that no evaluation can avoid; the time of two storm
rounds, in which 1,000 alerts open at once and then 500 pending ones fire at once; and what
announcing 1,000 transitions to a dashboard page costs, one channel-layer message each
(as before dashboard.batch) against one message for all."""

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from asgiref.sync import async_to_sync  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from common import redis_running, throwaway_database  # noqa: E402  (shared with every benchmark)
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from alerts import history  # noqa: E402
from alerts.engine import InstantValue, evaluate, label_fingerprint  # noqa: E402
from alerts.evaluation import alert_status, evaluate_rules, spec_for_rule  # noqa: E402
from alerts.models import Alert, AlertRule  # noqa: E402
from dashboard.batch import send_events  # noqa: E402
from dashboard.publish import GROUP_ALERTS, publish  # noqa: E402
from monitoring.ingest import SampleIn, ingest_samples  # noqa: E402
from monitoring.instant import instant_vectors  # noqa: E402

RULES_PER_METRIC = 10


def populate(rules: int, series: int, now: datetime) -> list[str]:
    """`series` series spread over rules / 10 metrics, 10 rules per metric. Series i of a
    metric has value i % 100; every rule's threshold lets about 1 series in 100 through,
    half the rules have a label matcher, half a duration (pending alerts as well as firing)."""
    metrics = [f"bench_metric_{m}" for m in range(max(1, rules // RULES_PER_METRIC))]
    per_metric = series // len(metrics)
    ingest_round(metrics, per_metric, now)
    AlertRule.objects.bulk_create(
        AlertRule(
            name=f"bench {m}/{j}",
            key=f"bench-{m}-{j}",
            metric=metric,
            matchers={"env": "prod"} if j % 2 else {},
            comparison=">",
            threshold=98.5,
            duration=60 * (j % 2),
        )
        for m, metric in enumerate(metrics)
        for j in range(RULES_PER_METRIC)
    )
    return metrics


def ingest_round(metrics: list[str], per_metric: int, at: datetime, jitter: float = 0.0) -> None:
    samples = [
        SampleIn(metric, {"host": f"h{i}", "env": "prod" if i % 2 else "dev"}, i % 100 + jitter, at.timestamp())
        for metric in metrics
        for i in range(per_metric)
    ]
    for start in range(0, len(samples), 5000):
        ingest_samples(samples[start : start + 5000], now=at)


CPU_TIMES: list[float] = []  # this process's CPU time of each timed() call, in order


def timed(work: Callable[[], object]) -> float:
    cpu = time.process_time()
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    CPU_TIMES.append(time.process_time() - cpu)
    return elapsed


def baseline_reads(metrics: list[str], at: datetime) -> None:
    instant_vectors(metrics, at)
    list(Alert.objects.open())


def engine_only(metrics: list[str], at: datetime) -> None:
    """The pure engine over data already in memory: what the decisions cost."""
    vectors = instant_vectors(metrics, at)
    values = {
        m: [InstantValue(s.labels, s.value, label_fingerprint(s.labels)) for s in samples]
        for m, samples in vectors.items()
    }
    open_by_rule: dict[int, list] = {}
    for alert in Alert.objects.open():
        open_by_rule.setdefault(alert.rule_id, []).append(alert_status(alert))
    rules = [(rule.id, spec_for_rule(rule)) for rule in AlertRule.objects.all()]
    started = time.perf_counter()
    for rule_id, spec in rules:
        evaluate(spec, values[spec.metric], open_by_rule.get(rule_id, ()), at)
    return time.perf_counter() - started


def publish_costs(transitions: int) -> tuple[float, float]:
    """Seconds to announce `transitions` alert transitions to a page subscribed to the alerts
    group: one publish each, and one batched message (dashboard.batch.send_events)."""
    layer = get_channel_layer()
    page = "bench-page"  # a subscriber, as an open Alerts page is
    async_to_sync(layer.group_add)(GROUP_ALERTS, page)
    at = timezone.now().isoformat()
    payloads = [
        {"id": i, "rule": 1, "state": "active", "from": "", "severity": "high", "labels": {"host": f"h{i}"},
         "value": 99.0, "at": at}
        for i in range(transitions)
    ]  # fmt: skip
    try:
        one_each = timed(lambda: [publish(GROUP_ALERTS, "alert.transition", payload) for payload in payloads])
        batched = timed(
            lambda: send_events(GROUP_ALERTS, [{"event": "alert.transition", "payload": p} for p in payloads])
        )
    finally:
        async_to_sync(layer.group_discard)(GROUP_ALERTS, page)
    return one_each, batched


STORM_SERIES = 1000


def one_publish_per_transition(*, alert: Alert, event) -> None:
    """alerts.history.after_transition as it was before dashboard.batch: the baseline."""
    from notifications.services import notify_transition

    notify_transition(alert=alert, event=event)
    payload = {
        "id": alert.pk, "rule": alert.rule_id, "state": str(event.to_state), "from": str(event.from_state),
        "severity": alert.severity, "labels": alert.labels, "value": event.value, "at": event.at.isoformat(),
    }  # fmt: skip
    transaction.on_commit(lambda: publish(GROUP_ALERTS, "alert.transition", payload))


def storm_rounds(start: datetime, repeats: int = 2) -> dict[str, float]:
    """One rule whose 1,000 series all cross its threshold in one evaluation, then all clear
    in the next, with a page subscribed to the alerts group: the best time of each, with the
    transitions announced one message each (the baseline) and in one batch (as now)."""
    metric = "bench_storm"
    rule = AlertRule.objects.create(name="storm", key="bench-storm", metric=metric, comparison=">", threshold=50)
    layer = get_channel_layer()
    async_to_sync(layer.group_add)(GROUP_ALERTS, "bench-page")
    best: dict[str, float] = {}
    at = start
    try:
        for _ in range(repeats):
            for way, hook in (("one each", one_publish_per_transition), ("batched", history.after_transition)):
                for kind, value in (("fire", 99.0), ("resolve", 1.0)):
                    at += timedelta(seconds=10)
                    samples = [SampleIn(metric, {"host": f"h{i}"}, value, at.timestamp()) for i in range(STORM_SERIES)]
                    ingest_samples(samples, now=at)
                    previous, history.after_transition = history.after_transition, hook
                    try:
                        took = timed(lambda at=at: evaluate_rules([rule.id], now=at))
                    finally:
                        history.after_transition = previous
                    best[f"{kind}, {way}"] = min(took, best.get(f"{kind}, {way}", float("inf")))
    finally:
        async_to_sync(layer.group_discard)(GROUP_ALERTS, "bench-page")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="steady rounds")
    args = parser.parse_args()

    with redis_running(), throwaway_database():
        start = timezone.now().replace(microsecond=0)
        metrics = populate(args.rules, args.series, start)
        per_metric = args.series // len(metrics)

        opening = timed(lambda: evaluate_rules(now=start))
        opened = Alert.objects.open().count()

        steady, steady_cpu, baselines = [], [], []
        for k in range(1, args.rounds + 1):
            at = start + timedelta(seconds=5 * k)  # before the pending alerts' 60 s are up
            ingest_round(metrics, per_metric, at, jitter=0.01 * k)  # values move, nothing crosses
            baselines.append(min(timed(lambda at=at: baseline_reads(metrics, at)) for _ in range(3)))
            steady.append(timed(lambda at=at: evaluate_rules(now=at)))
            steady_cpu.append(CPU_TIMES[-1])
        engine = engine_only(metrics, start + timedelta(seconds=5 * args.rounds))

        at = start + timedelta(seconds=60)
        ingest_round(metrics, per_metric, at)
        pending = Alert.objects.filter(state="pending").count()
        firing = timed(lambda: evaluate_rules(now=at))
        publish_each, publish_batched = publish_costs(1000)
        storms = storm_rounds(at + timedelta(seconds=60))

    steady_median = statistics.median(steady)
    baseline = statistics.median(baselines)
    print(f"database: {connection.vendor}; {args.rules} rules over {args.series} series ({len(metrics)} metrics)")
    print(f"baseline (SQL reads alone):          {baseline * 1000:8.1f} ms")
    print(
        f"steady round, median of {len(steady)}:        {steady_median * 1000:8.1f} ms  "
        f"({steady_median / baseline:.1f}x baseline; min {min(steady) * 1000:.1f}, max {max(steady) * 1000:.1f};"
        f" {opened} alerts' values refreshed)"
    )
    print(f"  this process's CPU time, median:  {statistics.median(steady_cpu) * 1000:8.1f} ms")
    print(f"  of which the pure engine:          {engine * 1000:8.1f} ms")
    print(
        f"storm round, {opened} alerts opened:  {opening * 1000:8.1f} ms  "
        f"({opening / opened * 1000:.2f} ms per transition)"
    )
    print(
        f"storm round, {pending} alerts fire:    {firing * 1000:8.1f} ms  "
        f"({firing / max(pending, 1) * 1000:.2f} ms per transition)"
    )
    print(
        f"announcing 1000 transitions:         {publish_each * 1000:8.1f} ms one message each, "
        f"{publish_batched * 1000:.1f} ms in one batch ({publish_each / publish_batched:.0f}x)"
    )
    for kind in ("fire", "resolve"):
        each, batched = storms[f"{kind}, one each"], storms[f"{kind}, batched"]
        print(
            f"storm, {STORM_SERIES} alerts {kind} in one evaluation: {each * 1000:8.1f} ms announced one message "
            f"each, {batched * 1000:.1f} ms in one batch ({each / batched:.1f}x)"
        )
    verdict = "under" if steady_median < 1.0 else "NOT under"
    print(f"steady round {verdict} 1 s (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
