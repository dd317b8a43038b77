"""Benchmark: metric queries with 10,000,000 samples stored, against the configured database
engine (a throwaway database is created, filled in SQL and dropped).

    DATABASE_URL=postgres://... .venv/bin/python benchmarks/bench_queries.py [--samples 10000000] [--repeat 30]

Data: 10,000 series. 10 % are dense (one sample every 10 s for 24 h: 8,640 each; fewer
when --samples is small), the rest sparse, so that the total is about --samples. Rows are
written in time order across all series, as ingestion writes them, so one series' samples
are spread over the table, not packed.

Measures, each the median and 95th percentile of --repeat runs on a different series:
- 24 h of one dense series in 1-minute buckets (target < 50 ms): the bucketing SQL alone,
  `queries.query_range()` (what the API runs: the page with its count, then the buckets), and the whole
  `GET /api/metrics` request in-process (authentication, serialization, JSON);
- the same without a step (the API's default: a sample count, then 2-minute buckets);
- the last value of 10,000 series (target < 100 ms): the SQL alone, `queries.list_series()`
  (labels cached in the process, and not yet), and `GET /api/metrics?limit=10000`;
- the `/metrics` page with 10,000 series."""

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from common import redis_running, throwaway_database  # noqa: E402  (shared with every benchmark)
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from monitoring import queries, storage  # noqa: E402
from monitoring.apikeys import create_api_key  # noqa: E402
from monitoring.exposition import render_exposition  # noqa: E402
from monitoring.queries import SeriesSelector, list_series, query_range  # noqa: E402

SERIES = 10_000
DENSE_SHARE = 10  # one series in 10 is dense
DENSE_INTERVAL_MS = 10_000
DAY_MS = 86_400_000
BUCKET_TARGET_MS = 50.0
LAST_VALUE_TARGET_MS = 100.0


def load(samples: int, end_ms: int) -> tuple[int, int]:
    """Fill the real tables in SQL. Returns (dense series count, sparse samples per series)."""
    per_dense = DAY_MS // DENSE_INTERVAL_MS
    # Dense series take at most 90 % of the samples (all 1,000 of them from 9.6 M samples).
    dense = max(1, min(SERIES // DENSE_SHARE, samples * 9 // 10 // per_dense))
    sparse = SERIES - dense
    per_sparse = max(1, (samples - dense * per_dense) // sparse)
    sparse_interval = DAY_MS // per_sparse
    start_ms = end_ms - DAY_MS
    if storage.is_postgres():
        with transaction.atomic():
            storage.ensure_partitions(range(storage.day_of(start_ms), storage.day_of(end_ms) + 1))
    # Series 1..dense are dense; the others sparse. Ids are the generated numbers.
    series_sql = {
        "postgresql": """
            INSERT INTO monitoring_series (id, name, labels, fingerprint, last_value, last_ts, created_at)
            SELECT i, CASE WHEN i <= %(dense)s THEN 'bench_dense' ELSE 'bench_sparse' END,
                   jsonb_build_object('device_id', 'd-' || i, 'site', 'site-' || (i %% 50)),
                   md5(i::text), i %% 100, %(end)s, now()
            FROM generate_series(1, %(series)s) AS i
        """,
        "sqlite": """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %(series)s)
            INSERT INTO monitoring_series (id, name, labels, fingerprint, last_value, last_ts, created_at)
            SELECT i, CASE WHEN i <= %(dense)s THEN 'bench_dense' ELSE 'bench_sparse' END,
                   json_object('device_id', 'd-' || i, 'site', 'site-' || (i %% 50)),
                   lower(hex(randomblob(16))), i %% 100, %(end)s, datetime('now')
            FROM n
        """,
    }
    # Time-major (every series at t, then every series at t + interval), as ingestion writes.
    samples_sql = {
        "postgresql": """
            INSERT INTO monitoring_sample (series_id, ts, value)
            SELECT s, %(end)s - k * %(interval)s, (s * 7 + k) %% 100
            FROM generate_series(%(count)s - 1, 0, -1) AS k, generate_series(%(first)s, %(last)s) AS s
        """,
        "sqlite": """
            WITH RECURSIVE kk(k) AS (SELECT %(count)s - 1 UNION ALL SELECT k - 1 FROM kk WHERE k > 0),
                           ss(s) AS (SELECT %(first)s UNION ALL SELECT s + 1 FROM ss WHERE s < %(last)s)
            INSERT INTO monitoring_sample (series_id, ts, value)
            SELECT s, %(end)s - k * %(interval)s, (s * 7 + k) %% 100 FROM kk, ss
        """,
    }
    vendor = connection.vendor
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(series_sql[vendor], {"dense": dense, "series": SERIES, "end": end_ms})
        for first, last, count, interval in (
            (1, dense, per_dense, DENSE_INTERVAL_MS),
            (dense + 1, SERIES, per_sparse, sparse_interval),
        ):
            cursor.execute(
                samples_sql[vendor],
                {"first": first, "last": last, "count": count, "interval": interval, "end": end_ms},
            )
        if vendor == "postgresql":
            cursor.execute("SELECT setval('monitoring_series_id_seq', %s)", [SERIES])
    with connection.cursor() as cursor:
        # What autovacuum does after a large load: statistics, and the visibility map.
        cursor.execute("VACUUM ANALYZE" if vendor == "postgresql" else "ANALYZE")
    return dense, per_sparse


def timed(run: Callable[[int], object], repeat: int, pick: Callable[[], int]) -> tuple[float, float, float]:
    """(median, p95, median CPU) in ms of `repeat` runs after two warm-up runs, each on
    `pick()`. CPU is this process's own time: on a busy machine the wall time also holds
    the wait for a core; the database's work is in the wall time only."""
    for _ in range(2):
        run(pick())
    times, cpu = [], []
    for _ in range(repeat):
        argument = pick()
        started, started_cpu = time.perf_counter(), time.process_time()
        run(argument)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))], statistics.median(cpu)


def report(label: str, figures: tuple[float, float, float], target: float | None = None) -> None:
    median, p95, cpu = figures
    verdict = ""
    if target is not None:
        verdict = f"  target < {target:g} ms: {'met' if median < target else 'MISSED'} ({median / target:.2f}x of it)"
    print(f"  {label:<50} median {median:7.1f} ms  p95 {p95:7.1f} ms  python CPU {cpu:6.1f} ms{verdict}")


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    from django.contrib.auth.models import Group, User

    with redis_running(), throwaway_database():
        end_ms = int(time.time() * 1000) // 60_000 * 60_000
        started = time.perf_counter()
        dense, per_sparse = load(args.samples, end_ms)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM monitoring_sample")
            stored = cursor.fetchone()[0]
        print(load_average())
        print(
            f"{connection.vendor}: {stored:,} samples in {SERIES:,} series ({dense:,} x 8,640, "
            f"{SERIES - dense:,} x {per_sparse:,}) loaded in {time.perf_counter() - started:.0f} s"
        )
        viewer = User.objects.create_user("bench", password="not-used-here-0")
        viewer.groups.add(Group.objects.get(name="viewer"))
        client = Client(HTTP_X_API_KEY=create_api_key(user=viewer, name="bench").plain)
        start_ms = end_ms - DAY_MS
        dense_series = lambda: random.randint(1, dense)  # noqa: E731

        def bucket_sql(series_id: int) -> list:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT ts / 60000 * 60000 AS bucket, avg(value), min(value), max(value), count(*)"
                    " FROM monitoring_sample WHERE series_id = %s AND ts >= %s AND ts <= %s"
                    " GROUP BY bucket ORDER BY bucket",
                    [series_id, start_ms, end_ms],
                )
                return cursor.fetchall()

        def bucket_query(series_id: int, step_ms: int | None = 60_000):
            selector = SeriesSelector(metric="bench_dense", labels={"device_id": f"d-{series_id}"})
            result = query_range(selector, start_ms=start_ms, end_ms=end_ms, step_ms=step_ms, limit=1)
            assert len(result.series[0].points) >= (1440 if step_ms == 60_000 else 720)
            return result

        def bucket_api(series_id: int, step: str | None = "60"):
            params = {"metric": "bench_dense", "label": f"device_id:d-{series_id}", "hours": "24"}
            if step:
                params["step"] = step
            response = client.get("/api/metrics", params)
            assert response.status_code == 200, response.content[:300]
            return response

        assert len(bucket_sql(1)) >= 1440

        print("24 h of one series (8,640 samples) in 1-minute buckets:")
        report("SQL GROUP BY ts / 60000 alone", timed(bucket_sql, args.repeat, dense_series))
        report("queries.query_range(step=60 s)", timed(bucket_query, args.repeat, dense_series), BUCKET_TARGET_MS)
        report("GET /api/metrics?hours=24&step=60 (in-process)", timed(bucket_api, args.repeat, dense_series))
        print("24 h of one series, default step (sample count, then 2-minute buckets):")
        report(
            "queries.query_range(step=None)",
            timed(lambda s: bucket_query(s, None), args.repeat, dense_series),
        )
        report(
            "GET /api/metrics?hours=24 (in-process)", timed(lambda s: bucket_api(s, None), args.repeat, dense_series)
        )

        def last_values_sql(_: int) -> list:
            with connection.cursor() as cursor:
                cursor.execute("SELECT id, name, labels, last_value, last_ts FROM monitoring_series ORDER BY name, id")
                rows = cursor.fetchall()
            assert len(rows) == SERIES
            return rows

        def last_values(_: int):
            page = list_series(SeriesSelector(), limit=SERIES)
            assert len(page.series) == SERIES
            return page

        def last_values_cold(_: int):
            queries._labels_cache.clear()
            return last_values(0)

        def last_values_api(_: int):
            response = client.get("/api/metrics", {"limit": str(SERIES)})
            assert response.status_code == 200
            return response

        def exposition(_: int) -> bytes:
            return render_exposition()

        print(f"Last value of {SERIES:,} series:")
        report("SQL SELECT ... FROM monitoring_series alone", timed(last_values_sql, args.repeat, lambda: 0))
        report("queries.list_series(limit=10000)", timed(last_values, args.repeat, lambda: 0), LAST_VALUE_TARGET_MS)
        report("  the same, labels not cached yet (a new process)", timed(last_values_cold, args.repeat, lambda: 0))
        report("GET /api/metrics?limit=10000 (in-process)", timed(last_values_api, args.repeat, lambda: 0))
        report("/metrics exposition (render_exposition)", timed(exposition, max(5, args.repeat // 3), lambda: 0))
        print(load_average())


if __name__ == "__main__":
    main()
