"""Benchmark: one evaluation round of 1,000 alert rules over 10,000 series, against the
configured database engine (a throwaway database is created and dropped).

    .venv/bin/python benchmarks/bench_evaluation.py [--rules 1000] [--series 10000] [--rounds 5]

Prints the time of a steady round (new samples every round, 1,000 open alerts' values
refreshed, no state change) against a bare baseline, the SQL reads alone (instant vectors
of every metric and the open alerts) that no evaluation can avoid; and the time of two
storm rounds, in which 1,000 alerts open at once and then 500 pending ones fire at once."""

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

from common import redis_running, throwaway_database  # noqa: E402  (shared with every benchmark)
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from alerts.engine import InstantValue, evaluate, label_fingerprint  # noqa: E402
from alerts.evaluation import alert_status, evaluate_rules, spec_for_rule  # noqa: E402
from alerts.models import Alert, AlertRule  # noqa: E402
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
    verdict = "under" if steady_median < 1.0 else "NOT under"
    print(f"steady round {verdict} 1 s (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
