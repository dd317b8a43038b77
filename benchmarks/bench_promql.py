"""Benchmark: Prometheus API range queries, as Grafana sends them, on a throwaway database of
the configured engine (PostgreSQL under `make bench`).

    DATABASE_URL=postgres://... .venv/bin/python benchmarks/bench_promql.py [--series 100] [--interval 15] [--repeat 15]

Data: --series counters (`bench_requests_total{instance, site}`, five sites) with a sample
every --interval seconds (default 60, the system's collection interval and the devices'
push interval; Prometheus scrapes often every 15 s: --interval 15) for the last 24 h,
loaded through ingest_samples.

Measures the whole `GET /prometheus/api/v1/query_range` request in-process (API key,
parsing, SQL, evaluation, JSON), 24 h at a 60 s step (1,441 steps), median and 95th
percentile of --repeat runs, for: the raw selector (every series, every step: the most
JSON), `rate(...[5m])` per series, and `sum by (site) (rate(...[5m]))` (the usual panel).
Target: < 300 ms on an idle machine. Also prints where the time goes for the rate query (SQL
read, evaluation, JSON text).

Baselines measured in the same run, so that a run on a busy machine can be read: a bare
request through the same client, key and middleware (`status/buildinfo`), and the same
samples read by one plain SQL statement (a row per sample, fetched by psycopg). Each query's
median is also given as a multiple of that raw read; on an idle machine, judge by the
absolute target."""

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets up Django)
from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from monitoring.apikeys import create_api_key  # noqa: E402
from monitoring.choices import Role  # noqa: E402
from monitoring.ingest import SampleIn, ingest_samples  # noqa: E402
from monitoring.models import Series  # noqa: E402
from monitoring.promql import functions  # noqa: E402
from monitoring.promql.api import points_template, series_points  # noqa: E402
from monitoring.promql.evaluator import Evaluator, query_steps  # noqa: E402
from monitoring.promql.parser import parse_expr  # noqa: E402

TARGET_MS = 300.0
DAY_S = 86_400
STEP_S = 60
SITES = ("north", "south", "east", "west", "central")
QUERIES = (
    "bench_requests_total",
    "rate(bench_requests_total[5m])",
    "sum by (site) (rate(bench_requests_total[5m]))",
)


def load(series: int, interval: int, end: int) -> int:
    """Counters growing by about 1/s with a reset every 6 h, through the ingestion path."""
    start = end - DAY_S
    batch: list[SampleIn] = []
    total = 0
    for ts in range(start, end + 1, interval):
        for index in range(series):
            labels = {"instance": f"i-{index:03d}", "site": SITES[index % len(SITES)]}
            value = float((ts - start) % 21_600 * (1 + index % 3))
            batch.append(SampleIn("bench_requests_total", labels, value, float(ts)))
        if len(batch) >= 50_000:
            total += ingest_samples(batch, now=datetime.fromtimestamp(end, tz=UTC)).accepted
            batch = []
    if batch:
        total += ingest_samples(batch, now=datetime.fromtimestamp(end, tz=UTC)).accepted
    return total


def timed(run, repeat: int) -> tuple[float, float, float]:
    """Median and 95th percentile wall time, and median CPU time of this process, in ms."""
    run()  # warm-up: plans, caches
    times, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        run()
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, round(0.95 * len(times)) - 1)], statistics.median(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument(
        "--interval", type=int, default=60, help="seconds between samples (60: the collection interval)"
    )
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    with common.redis_running(), common.throwaway_database():
        end = int(time.time()) // 60 * 60
        started = time.perf_counter()
        samples = load(args.series, args.interval, end)
        print(f"{connection.vendor}: {args.series} series, {samples:,} samples (every {args.interval} s for 24 h) "
              f"loaded in {time.perf_counter() - started:.1f} s")  # fmt: skip
        print(f"  {common.load_average()}")
        user = User.objects.create_user("bench")
        user.groups.add(Group.objects.get(name=Role.VIEWER.value))
        client = Client(HTTP_X_API_KEY=create_api_key(user=user, name="bench").plain)
        params = {"start": str(end - DAY_S), "end": str(end), "step": str(STEP_S)}

        def bare() -> None:
            assert client.get("/prometheus/api/v1/status/buildinfo").status_code == 200

        series_ids = list(Series.objects.filter(name="bench_requests_total").values_list("id", flat=True))

        def raw_read() -> None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT series_id, ts, value FROM monitoring_sample WHERE series_id IN ("  # noqa: S608
                    + ",".join(map(str, series_ids))
                    + ") AND ts BETWEEN %s AND %s",
                    [(end - DAY_S - 300) * 1000, end * 1000],
                )
                cursor.fetchall()

        bare_ms, bare_p95, bare_cpu = timed(bare, args.repeat)
        raw_ms, raw_p95, raw_cpu = timed(raw_read, args.repeat)
        print("baselines:")
        print(f"  {'bare request (status/buildinfo)':<48} median {bare_ms:6.1f} ms, p95 {bare_p95:6.1f} ms, "
              f"CPU {bare_cpu:6.1f} ms")  # fmt: skip
        print(f"  {'raw SQL: the samples, a row each':<48} median {raw_ms:6.1f} ms, p95 {raw_p95:6.1f} ms, "
              f"CPU {raw_cpu:6.1f} ms")  # fmt: skip

        worst = 0.0
        print(f"GET /prometheus/api/v1/query_range, 24 h at a {STEP_S} s step ({DAY_S // STEP_S + 1} steps):")
        for query in QUERIES:

            def run(query: str = query) -> None:
                response = client.get("/prometheus/api/v1/query_range", {**params, "query": query})
                assert response.status_code == 200, response.content[:500]

            median, p95, cpu = timed(run, args.repeat)
            size = len(client.get("/prometheus/api/v1/query_range", {**params, "query": query}).content)
            worst = max(worst, median)
            verdict = "met" if median < TARGET_MS else "MISSED"
            print(f"  {query:<48} median {median:6.1f} ms, p95 {p95:6.1f} ms, CPU {cpu:6.1f} ms, "
                  f"{median / raw_ms:4.1f}x raw SQL  ({size / 1e6:.1f} MB of JSON; target < {TARGET_MS:.0f} ms: "
                  f"{verdict})")  # fmt: skip

        steps = query_steps((end - DAY_S) * 1000, end * 1000, STEP_S * 1000)
        node = parse_expr("rate(bench_requests_total[5m])")

        def evaluator() -> Evaluator:
            return Evaluator(steps, deadline=time.monotonic() + 60, max_samples=50_000_000)

        matrix = evaluator().eval(node.args[0])
        vector = functions.call_function("rate", [matrix], steps)
        templates = points_template(steps)
        present = [(",".join(templates[i] for i in item.present.nonzero()[0]), item.values[item.present])
                   for item in vector.series]  # fmt: skip

        def write() -> None:
            for template, values in present:
                series_points(template, values)

        read_ms, _, read_cpu = timed(lambda: evaluator().eval(node.args[0]), args.repeat)
        _, _, rate_cpu = timed(lambda: functions.call_function("rate", [matrix], steps), args.repeat)
        _, _, write_cpu = timed(write, args.repeat)
        print(f"  of which for rate(): series + samples read {read_ms:.1f} ms ({read_cpu:.1f} ms CPU here), "
              f"rate over 1,441 steps {rate_cpu:.1f} ms CPU, values as JSON text {write_cpu:.1f} ms CPU")  # fmt: skip
        print(f"  {common.load_average()}")
        verdict = "met" if worst < TARGET_MS else "MISSED"
        print(f"target: every query < {TARGET_MS:.0f} ms (median, idle machine): {verdict}")
        return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
