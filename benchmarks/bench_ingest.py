"""Benchmark: ingestion, against a plain bulk load of the same rows in the same run, on a
throwaway database of the configured engine (PostgreSQL when DATABASE_URL names one).

    DATABASE_URL=postgres://... .venv/bin/python benchmarks/bench_ingest.py [--series 10000] [--timestamps 100]

Rows: --series series x --timestamps timestamps (10 s apart, ending now) in batches of
--batch samples.

PostgreSQL:
1. raw: psycopg COPY (write_row) into a bare table with the same columns and primary key,
   one transaction per batch; measured before and after the rest, the mean is the baseline;
2. `ingest_samples()` with batches of one timestamp of every series (as a collector or a
   scrape delivers them: every sample moves its series' last value; target >= 0.6x of raw),
   then with batches of 100 timestamps of 100 series (devices pushing buffered readings),
   against a raw COPY of the rows in that order;
3. `POST /api/metrics` with --clients concurrent clients (each pushes its own share of the
   series, 10,000 samples a request, bodies encoded beforehand) against a real server:
   daphne (ASGI, one process, as `make run` starts it) and gunicorn (WSGI, --workers sync
   workers), with persistent database connections (target >= 0.35x of raw); then, on the
   same server, --small-requests pushes of 10 samples per client (a device's push).
SQLite (a second process on a temporary SQLite file): executemany into a bare table vs
`ingest_samples()`."""

import argparse
import gc
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets up Django)
from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402

from monitoring import ingest, storage  # noqa: E402
from monitoring.apikeys import create_api_key  # noqa: E402
from monitoring.ingest import SampleIn, ingest_samples  # noqa: E402
from monitoring.models import GlobalSettings  # noqa: E402

METRIC = "bench_cpu_usage_percent"
INGEST_TARGET = 0.6
HTTP_TARGET = 0.35
HTTP_SAMPLES_PER_REQUEST = 10_000
SMALL_REQUEST_SAMPLES = 10


def labels_of(series: int) -> dict[str, str]:
    return {"device_id": f"d-{series:05d}", "region": f"r{series % 10}"}


def timestamps(count: int) -> list[float]:
    end = int(time.time()) - 5
    return [end - (count - 1 - i) * 10 for i in range(count)]


def value_of(series: int, step: int) -> float:
    return float((series * 7 + step * 13) % 1000) / 10


def make_batches(n_series: int, times: list[float], batch: int, by_series: bool = False) -> list[list[SampleIn]]:
    """Samples in batches: by time (each batch one timestamp of every series, as a collector
    delivers them) or, with `by_series`, series after series (each batch 100 timestamps of
    100 series, as devices pushing their buffered readings deliver them)."""
    labels = [labels_of(s) for s in range(n_series)]
    if by_series:
        samples = [SampleIn(METRIC, labels[s], value_of(s, i), t) for s in range(n_series) for i, t in enumerate(times)]
    else:
        samples = [SampleIn(METRIC, labels[s], value_of(s, i), t) for i, t in enumerate(times) for s in range(n_series)]
    return [samples[start : start + batch] for start in range(0, len(samples), batch)]


def raw_rows(n_series: int, times: list[float], batch: int, by_series: bool = False) -> list[list[tuple]]:
    if by_series:
        rows = [(s + 1, int(t * 1000), value_of(s, i)) for s in range(n_series) for i, t in enumerate(times)]
    else:
        rows = [(s + 1, int(t * 1000), value_of(s, i)) for i, t in enumerate(times) for s in range(n_series)]
    return [rows[start : start + batch] for start in range(0, len(rows), batch)]


def freeze_inputs() -> None:
    """Keep the prepared input (a million objects) out of the garbage collector's scans: a
    server never holds it, and scanning it would be charged to whatever runs next."""
    gc.collect()
    gc.freeze()


def reset_tables() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE monitoring_series, monitoring_sample")
        else:
            cursor.execute("DELETE FROM monitoring_sample")
            cursor.execute("DELETE FROM monitoring_series")
    ingest._series_cache.clear()


def sample_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_sample")
        return cursor.fetchone()[0]


# --- baselines ----------------------------------------------------------------------------------


def raw_copy(batches: list[list[tuple]]) -> float:
    """Seconds to COPY the rows into a bare table with the sample table's columns and key."""
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_raw_sample")
        cursor.execute(
            "CREATE TABLE bench_raw_sample (series_id bigint NOT NULL, ts bigint NOT NULL,"
            " value double precision, PRIMARY KEY (series_id, ts))"
        )
    pg = connection.connection
    started = time.perf_counter()
    for rows in batches:
        with (
            pg.transaction(),
            pg.cursor() as cursor,
            cursor.copy("COPY bench_raw_sample (series_id, ts, value) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_raw_sample")
    return elapsed


def raw_executemany(batches: list[list[tuple]]) -> float:
    """Seconds to insert the rows with executemany into a bare SQLite table with the same key."""
    db = connection.connection
    db.execute("DROP TABLE IF EXISTS bench_raw_sample")
    db.execute(
        "CREATE TABLE bench_raw_sample (series_id integer NOT NULL, ts integer NOT NULL, value real,"
        " PRIMARY KEY (series_id, ts))"
    )
    db.commit()
    started = time.perf_counter()
    for rows in batches:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO bench_raw_sample (series_id, ts, value) VALUES (?, ?, ?)", rows)
        db.commit()
    elapsed = time.perf_counter() - started
    db.execute("DROP TABLE bench_raw_sample")
    db.commit()
    return elapsed


def last_value_updates_alone(count: int, after: float) -> float:
    """Seconds for `count` batches of only the last-value UPDATE that ingestion runs per batch
    (every series moved to a newer sample), each in its own transaction: the part of
    ingestion that a bare COPY does not do."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM monitoring_series ORDER BY id")
        ids = [row[0] for row in cursor.fetchall()]
    started = time.perf_counter()
    for step in range(count):
        with transaction.atomic():
            missing = storage.update_last_values(
                ids, [int((after + 10 * (step + 1)) * 1000)] * len(ids), [1.0] * len(ids)
            )
        assert not missing
    return time.perf_counter() - started


def through_ingest(batches: list[list[SampleIn]]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) to ingest the batches."""
    started, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        result = ingest_samples(batch)
        assert result.accepted == len(batch), result.rejected[:3]
    return time.perf_counter() - started, time.process_time() - cpu


# --- the HTTP path ------------------------------------------------------------------------------


def client_bodies(n_series: int, times: list[float], clients: int) -> list[list[bytes]]:
    """Each client's request bodies: its own series (devices push their own), all timestamps."""
    bodies = []
    for client in range(clients):
        mine = range(client, n_series, clients)
        samples = [
            {"metric": METRIC, "labels": labels_of(s), "value": value_of(s, i), "timestamp": t}
            for i, t in enumerate(times)
            for s in mine
        ]
        bodies.append(
            [
                json.dumps({"samples": samples[start : start + HTTP_SAMPLES_PER_REQUEST]}).encode()
                for start in range(0, len(samples), HTTP_SAMPLES_PER_REQUEST)
            ]
        )
    return bodies


def small_bodies(n_series: int, clients: int, per_client: int, size: int) -> list[list[bytes]]:
    """Each client's small pushes: `size` of its own series at one timestamp each, as a
    device sends its readings every few seconds."""
    end = int(time.time()) - 5
    bodies = []
    for client in range(clients):
        mine = list(range(client, n_series, clients))
        requests = []
        for number in range(per_client):
            first = (number * size) % len(mine)
            series = [mine[(first + k) % len(mine)] for k in range(size)]
            timestamp = end - (per_client - number) * 0.01  # distinct per request
            samples = [{"metric": METRIC, "labels": labels_of(s), "value": 1.0, "timestamp": timestamp} for s in series]
            requests.append(json.dumps({"samples": samples}).encode())
        bodies.append(requests)
    return bodies


def push_all(port: int, key: str, bodies: list[bytes], start: multiprocessing.Event, out: multiprocessing.Queue):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    accepted = 0
    start.wait()
    for body in bodies:
        conn.request("POST", "/api/metrics", body, {"Content-Type": "application/json", "X-API-Key": key})
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            out.put(RuntimeError(f"HTTP {response.status}: {payload[:300]!r}"))
            return
        accepted += json.loads(payload)["accepted"]
    out.put(accepted)


def through_http(port: int, key: str, bodies: list[list[bytes]]) -> float:
    """Seconds for the clients to push all their bodies, from a common start."""
    context = multiprocessing.get_context("fork")
    start, out = context.Event(), context.Queue()
    connections.close_all()  # the children must not share this process's database socket
    workers = [context.Process(target=push_all, args=(port, key, mine, start, out)) for mine in bodies]
    for worker in workers:
        worker.start()
    time.sleep(0.5)
    started = time.perf_counter()
    start.set()
    results = [out.get(timeout=900) for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    for result in results:
        if isinstance(result, Exception):
            raise result
    assert sum(results) == sum(body.count(b'"metric"') for mine in bodies for body in mine)
    return elapsed


def server_commands(workers: int) -> dict[str, list[str]]:
    """Name -> command line of each server measured; {port} is filled in per run."""
    bin_dir = Path(sys.executable).parent
    return {
        "daphne (ASGI, 1 process)": [
            str(bin_dir / "daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            "{port}",
            "config.asgi:application",
        ],
        f"gunicorn (WSGI, {workers} sync workers)": [
            str(bin_dir / "gunicorn"),
            "--workers",
            str(workers),
            "--bind",
            "127.0.0.1:{port}",
            "--timeout",
            "300",
            "config.wsgi:application",
        ],
    }


def api_key() -> str:
    GlobalSettings.load()  # an installed system has its settings row; servers must not race to create it
    user = User.objects.create_user("bench-device", password="not-used-here-0")
    user.groups.add(Group.objects.get(name="viewer"))
    return create_api_key(user=user, name="bench").plain


# --- runs --------------------------------------------------------------------------------------


def run_postgres(args: argparse.Namespace) -> None:
    times = timestamps(args.timestamps)
    rows = args.series * args.timestamps
    print(f"PostgreSQL: {args.series:,} series x {args.timestamps} timestamps in batches of {args.batch:,}")
    print(f"  {common.load_average()}")
    by_time, by_series = raw_rows(args.series, times, args.batch), raw_rows(args.series, times, args.batch, True)
    before = raw_copy(by_time)
    batches = make_batches(args.series, times, args.batch)
    series_batches = make_batches(args.series, times, args.batch, by_series=True)
    freeze_inputs()
    reset_tables()
    wall, cpu = through_ingest(batches)
    assert sample_count() == rows
    reset_tables()
    series_wall, series_cpu = through_ingest(series_batches)
    assert sample_count() == rows
    update_seconds = last_value_updates_alone(args.timestamps, times[-1])
    raw_by_series = raw_copy(by_series)
    after = raw_copy(by_time)
    baseline = rows / ((before + after) / 2)
    print(common.rate_line("raw COPY into a bare table, rows by time (before)", rows, before))
    print(common.rate_line("raw COPY into a bare table, rows by time (after)", rows, after))
    print(
        common.rate_line("ingest_samples(), a batch = 1 timestamp x 10,000 series", rows, wall, baseline, INGEST_TARGET)
    )
    print(f"  {'':<58} (ingest's own Python CPU: {cpu:.2f} s of {wall:.2f} s)")
    print(
        common.rate_line("  its last-value UPDATE alone (10,000 series rows a batch)", rows, update_seconds, baseline)
    )
    print(common.rate_line("raw COPY into a bare table, rows by series", rows, raw_by_series))
    print(
        common.rate_line(
            "ingest_samples(), a batch = 100 timestamps x 100 series", rows, series_wall, rows / raw_by_series
        )
    )
    print(f"  {'':<58} (ingest's own Python CPU: {series_cpu:.2f} s of {series_wall:.2f} s)")
    del batches, series_batches
    if args.skip_http:
        return

    bodies = client_bodies(args.series, times, args.clients)
    size = sum(len(body) for mine in bodies for body in mine)
    print(f"  POST /api/metrics: {args.clients} clients, {sum(map(len, bodies))} requests, {size / 1e6:.0f} MB of JSON")
    key = api_key()
    # Persistent database connections, as a production web process runs (DB_CONN_MAX_AGE).
    env = {"DATABASE_URL": common.database_url(), "LOG_LEVEL": "WARNING", "DB_CONN_MAX_AGE": "60"}
    small = small_bodies(args.series, args.clients, args.small_requests, SMALL_REQUEST_SAMPLES)
    small_total = args.clients * args.small_requests
    for name, command in server_commands(args.workers).items():
        reset_tables()
        connections.close_all()
        port = common.free_port()
        with common.server_process([part.format(port=port) for part in command], port, env):
            elapsed = through_http(port, key, bodies)
            assert sample_count() == rows
            print(common.rate_line(f"POST /api/metrics via {name}", rows, elapsed, baseline, HTTP_TARGET))
            small_elapsed = through_http(port, key, small)
        print(
            f"  {'  small pushes (' + str(SMALL_REQUEST_SAMPLES) + ' samples each), same server':<58}"
            f" {small_total / small_elapsed:>11,.0f} requests/s ({small_total:,} requests in {small_elapsed:6.2f} s)"
        )


def run_sqlite(args: argparse.Namespace) -> None:
    times = timestamps(args.timestamps)
    rows = args.series * args.timestamps
    print(f"SQLite: {args.series:,} series x {args.timestamps} timestamps in batches of {args.batch:,}")
    raw_batches = raw_rows(args.series, times, args.batch)
    raw_seconds = raw_executemany(raw_batches)
    batches = make_batches(args.series, times, args.batch)
    freeze_inputs()
    reset_tables()
    wall, cpu = through_ingest(batches)
    assert sample_count() == rows
    baseline = rows / raw_seconds
    print(common.rate_line("raw executemany into a bare table", rows, raw_seconds))
    print(common.rate_line("ingest_samples()", rows, wall, baseline))
    print(f"  {'':<58} (ingest's own Python CPU: {cpu:.2f} s of {wall:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--timestamps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--small-requests", type=int, default=500, help="small pushes per client")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--engine-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    with common.redis_running(), common.throwaway_database():
        if connection.vendor == "postgresql":
            run_postgres(args)
        else:
            run_sqlite(args)
    if args.engine_only or args.skip_sqlite or connection.vendor == "sqlite":
        return
    # The SQLite figure needs a process configured for SQLite.
    argv = [a for a in sys.argv[1:] if a != "--skip-http"]
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    sys.stdout.flush()
    subprocess.run([sys.executable, __file__, *argv, "--engine-only"], env=env, check=True)


if __name__ == "__main__":
    main()
