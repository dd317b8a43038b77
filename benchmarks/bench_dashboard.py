"""Benchmark: the dashboard's pages at fleet scale, against the configured database engine (a
throwaway database is created, filled and dropped).

    DATABASE_URL=postgres://... .venv/bin/python benchmarks/bench_dashboard.py [--repeat 7] [--no-browser]

Data: 10,000 series (20 of them with 24 h of one-minute samples), 2,000 targets (100
gateways and their devices) with one check each and 10 results per check, 5,000 alerts over
50 rules with two events each, 1,000 notifications, 2,000 audit entries.

Measures, for every page rendered in-process by Django's test client as an admin (session,
middleware, templates included): the median and 95th percentile render time of --repeat
requests (target < 300 ms on an idle machine) and the number of queries. Baselines of the same
run, to read a run on a busy machine by: a bare Django view through the same client and
middleware (`/healthz`), a trivial SQL statement's round trip, and each page's own statements
run alone on a bare cursor (the page's median is also given as a multiple of that). Then, unless --no-browser, the time
uPlot takes in Debian's Chromium to draw 24 h of one-minute points for 20 series (target
< 200 ms), with the chart data the server computes for a 1,000-pixel-wide chart."""

import argparse
import json
import mimetypes
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from common import redis_running, throwaway_database  # noqa: E402  (shared with every benchmark)
from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Max, OuterRef, Subquery  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from alerts.choices import AlertState, Severity  # noqa: E402
from alerts.models import Alert, AlertEvent, AlertRule  # noqa: E402
from dashboard.charts import chart_data  # noqa: E402
from healthchecks.choices import CheckKind, HealthStatus  # noqa: E402
from healthchecks.models import HealthCheck, HealthCheckResult  # noqa: E402
from monitoring import storage  # noqa: E402
from monitoring.choices import AuditAction, AuditSource, Role  # noqa: E402
from monitoring.models import AuditLogEntry, MonitoringTarget, Sample, Series  # noqa: E402
from monitoring.queries import SeriesSelector  # noqa: E402
from notifications.choices import ChannelKind, NotificationEvent, NotificationStatus  # noqa: E402
from notifications.models import Notification, NotificationChannel  # noqa: E402


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


PAGE_TARGET_MS = 300.0
CHART_TARGET_MS = 200.0
SERIES, CHARTED, TARGETS, ALERTS = 10_000, 20, 2_000, 5_000


def build_fleet(now) -> dict:
    now_ms = int(now.timestamp() * 1000)
    rng = random.Random(8)
    series = [
        Series(
            name="cpu_usage_percent" if i < 2_000 else f"metric_{i % 40}_total",
            labels={"host": f"h{i}", "region": f"r{i % 8}"},
            fingerprint=uuid4().hex,
            last_value=float(i % 100),
            last_ts=now_ms,
        )
        for i in range(SERIES)
    ]
    Series.objects.bulk_create(series, batch_size=2_000)
    charted = list(Series.objects.filter(name="cpu_usage_percent", labels__region="r0").order_by("id")[:CHARTED])
    minutes = range(24 * 60)
    if storage.is_postgres():
        storage.ensure_partitions({storage.day_of(now_ms - m * 60_000) for m in minutes})
    Sample.objects.bulk_create(
        (Sample(series=s, ts=now_ms - m * 60_000, value=50 + 30 * rng.random()) for s in charted for m in minutes),
        batch_size=5_000,
    )
    gateways = MonitoringTarget.objects.bulk_create(
        MonitoringTarget(name=f"Gateway {i}", slug=f"gw-{i}") for i in range(100)
    )
    devices = MonitoringTarget.objects.bulk_create(
        MonitoringTarget(name=f"Device {i}", slug=f"dev-{i}", parent=gateways[i % 100]) for i in range(TARGETS - 100)
    )
    targets = gateways + devices
    statuses = [HealthStatus.HEALTHY] * 8 + [HealthStatus.WARNING, HealthStatus.CRITICAL]
    checks = HealthCheck.objects.bulk_create(
        HealthCheck(
            name=f"TCP {t.slug}",
            key=f"tcp-{t.slug}",
            kind=CheckKind.TCP,
            target=t,
            config={"host": "127.0.0.1", "port": 9},
            status=statuses[i % 10],
            last_checked_at=now,
        )
        for i, t in enumerate(targets)
    )
    HealthCheckResult.objects.bulk_create(
        (
            HealthCheckResult(
                health_check=c,
                status=statuses[(i + k) % 10],
                response_time=0.005 + 0.05 * rng.random(),
                message="connected",
                checked_at=now - timedelta(minutes=k * 10),
            )
            for i, c in enumerate(checks)
            for k in range(10)
        ),
        batch_size=5_000,
    )
    newest = HealthCheckResult.objects.filter(health_check=OuterRef("pk")).values("health_check").annotate(m=Max("id"))
    HealthCheck.objects.update(last_result=Subquery(newest.values("m")))
    rules = AlertRule.objects.bulk_create(
        AlertRule(
            name=f"Rule {i}",
            key=f"rule-{i}",
            metric="cpu_usage_percent" if i < 5 else f"metric_{i % 40}_total",
            comparison=">",
            threshold=70 + i,
            severity=list(Severity)[i % 4],
        )
        for i in range(50)
    )
    states = [AlertState.RESOLVED] * 6 + [AlertState.ACTIVE] * 2 + [AlertState.ACKNOWLEDGED, AlertState.PENDING]
    alerts = Alert.objects.bulk_create(
        (
            Alert(
                rule=rules[i % 50],
                fingerprint=uuid4().hex,
                labels={"host": f"h{i}", "target": targets[i % TARGETS].slug},
                severity=rules[i % 50].severity,
                state=states[i % 10],
                value=99.0,
                target=targets[i % TARGETS],
                pending_since=now - timedelta(hours=2),
                fired_at=now - timedelta(hours=1),
                resolved_at=now if states[i % 10] == AlertState.RESOLVED else None,
                silenced=i % 17 == 0,
            )
            for i in range(ALERTS)
        ),
        batch_size=1_000,
    )
    AlertEvent.objects.bulk_create(
        (
            AlertEvent(alert=a, from_state=frm, to_state=to, at=now - timedelta(minutes=m))
            for a in alerts
            for frm, to, m in (("", AlertState.PENDING, 120), (AlertState.PENDING, a.state, 60))
        ),
        batch_size=5_000,
    )
    channel = NotificationChannel.objects.create(name="Ops", key="ops", kind=ChannelKind.EMAIL)
    Notification.objects.bulk_create(
        Notification(
            alert=a,
            channel=channel,
            event=NotificationEvent.FIRING,
            status=NotificationStatus.SENT,
            attempts=1,
            idempotency_key=uuid4().hex,
        )
        for a in alerts[:1_000]
    )
    AuditLogEntry.objects.bulk_create(
        AuditLogEntry(
            actor_name="operator",
            source=AuditSource.DASHBOARD,
            action=AuditAction.ACKNOWLEDGE,
            object_type="alerts.alert",
            object_id=str(a.pk),
            object_repr=f"alert {a.pk}",
            after={"state": "acknowledged"},
        )
        for a in alerts[:2_000]
    )
    admin = User.objects.create_user("bench-admin", password="bench-password-1")
    admin.groups.add(Group.objects.get(name=Role.ADMIN))
    return {"admin": admin, "alert": alerts[6], "charted": charted, "now": now}


def measure_baselines(fleet: dict, repeat: int) -> tuple[float, float]:
    """Median ms of a bare Django view (`/healthz`, no database) through the test client, and
    of one `SELECT 1` round trip (median of 100 per run)."""
    client = Client()
    client.force_login(fleet["admin"])
    client.get("/healthz")
    views, selects = [], []
    for _ in range(repeat * 5):
        started = time.perf_counter()
        client.get("/healthz")
        views.append((time.perf_counter() - started) * 1000)
    with connection.cursor() as cursor:
        for _ in range(100):
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            selects.append((time.perf_counter() - started) * 1000)
    return statistics.median(views), statistics.median(selects)


def measure_pages(fleet: dict, repeat: int) -> list[tuple[str, float, float, float, int, float]]:
    """(page, median ms, p95 ms, median CPU ms of this process, queries, median ms of its SQL
    alone) per page. The CPU time is Python's work (views, templates, drivers); on a busy
    machine the wall time also holds the wait for a core."""
    client = Client()
    client.force_login(fleet["admin"])
    pages = [
        ("Overview", "/"),
        ("Alerts, firing tab", "/alerts/"),
        ("Alerts, resolved tab", "/alerts/?tab=resolved"),
        ("Alert page", f"/alerts/{fleet['alert'].pk}/"),
        ("Metrics page", "/metrics/?metric=cpu_usage_percent&range=24h"),
        (
            "Chart data: 20 series, 24 h, 1000 px",
            "/metrics/data?metric=cpu_usage_percent&label=region:r0&range=24h&width=1000",
        ),  # noqa: E501
        ("Health", "/health/"),
        ("Targets", "/targets/"),
        ("Logs, audit", "/logs/?tab=audit"),
        ("Logs, alert events", "/logs/?tab=events"),
        ("Alerts export (JSON)", "/alerts/?format=json"),
    ]
    rows = []
    for label, url in pages:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        count = len(queries)  # now: the next request resets the log the count is read from
        statements = [query["sql"] for query in queries.captured_queries]
        times, cpu, sql = [], [], []
        for _ in range(repeat):
            started, started_cpu = time.perf_counter(), time.process_time()
            client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            sql.append(sql_alone(statements))
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        rows.append((label, statistics.median(times), p95, statistics.median(cpu), count, statistics.median(sql)))
    return rows


def sql_alone(statements: list[str]) -> float:
    """ms to run a page's statements (as the page sent them) on a bare cursor and fetch every
    row: the baseline a page is compared with (its ORM and template work is the rest)."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement.replace("%", "%%"))  # the logged text has its parameters in it
            if cursor.description:
                cursor.fetchall()
    return (time.perf_counter() - started) * 1000


def measure_chart(fleet: dict, repeat: int) -> list[float]:
    """Draw times of the chart in Chromium, the page and its data served by request routing
    (no server: the figure is uPlot's work in the browser)."""
    from playwright.sync_api import sync_playwright

    now_ms = int(fleet["now"].timestamp() * 1000)
    data = chart_data(
        SeriesSelector(metric="cpu_usage_percent", labels={"region": "r0"}),
        start_ms=now_ms - 86_400_000,
        end_ms=now_ms,
        width_px=1000,
    )
    points = sum(len(s["v"]) for s in data["series"])
    print(f"  chart data: {len(data['series'])} series, {points:,} points, step {data['step']} s")
    html = (
        '<!doctype html><link rel="stylesheet" href="/static/vendor/uplot/uPlot.min.css">'
        '<div style="width:1000px"><div class="chart" data-chart-url="/data?x=1" data-metric="cpu_usage_percent"></div>'
        "<p data-chart-note></p></div>"
        '<script src="/static/vendor/uplot/uPlot.iife.min.js"></script><script src="/static/js/charts.js"></script>'
    )

    def serve(route) -> None:
        path = route.request.url.split("bench.local", 1)[1].split("?", 1)[0]
        if path == "/":
            route.fulfill(body=html, content_type="text/html")
        elif path == "/data":
            route.fulfill(body=json.dumps(data), content_type="application/json")
        else:
            file = ROOT / path.lstrip("/")
            route.fulfill(body=file.read_bytes(), content_type=mimetypes.guess_type(file.name)[0] or "text/plain")

    from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("http://bench.local/**", serve)
        for _ in range(repeat):
            page.goto("http://bench.local/")
            page.wait_for_selector(".chart[data-loaded]", timeout=60_000)
            times.append(float(page.get_attribute(".chart", "data-draw-ms")))
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    print(f"dashboard benchmark on {connection.vendor}; {load_average()}")
    with redis_running(), throwaway_database():
        started = time.perf_counter()
        fleet = build_fleet(timezone.now())
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")  # as autovacuum would have, after loading this much
        print(f"  fleet stored in {time.perf_counter() - started:.1f} s: {SERIES:,} series, {TARGETS:,} targets, "
              f"{ALERTS:,} alerts")  # fmt: skip
        bare_ms, select_ms = measure_baselines(fleet, args.repeat)
        print(f"  baselines: bare Django view (/healthz) median {bare_ms:.2f} ms, SELECT 1 round trip median "
              f"{select_ms:.3f} ms")  # fmt: skip
        for label, median, p95, cpu, queries, sql in measure_pages(fleet, args.repeat):
            verdict = "met" if median < PAGE_TARGET_MS else "MISSED"
            print(f"  {label:<38} median {median:6.1f} ms  p95 {p95:6.1f} ms  CPU {cpu:5.1f} ms  {queries:2d} queries, "
                  f"alone {sql:5.1f} ms = {median / sql:4.1f}x its SQL  "
                  f"(target < {PAGE_TARGET_MS:.0f} ms: {verdict})")  # fmt: skip
        if not args.no_browser and not Path("/usr/bin/chromium").exists():
            print("  chart draw time not measured: /usr/bin/chromium is missing (apt-get install chromium)")
        elif not args.no_browser:
            times = measure_chart(fleet, args.repeat)
            median = statistics.median(times)
            verdict = "met" if median < CHART_TARGET_MS else "MISSED"
            print(f"  uPlot draw of 20 series x 24 h in Chromium: median {median:.1f} ms, max {max(times):.1f} ms "
                  f"(target < {CHART_TARGET_MS:.0f} ms: {verdict})")  # fmt: skip
    print(f"done; {load_average()}")


if __name__ == "__main__":
    main()
