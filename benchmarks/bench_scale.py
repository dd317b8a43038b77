"""Benchmark: the whole system at fleet scale on this machine (issue 11, point 6). Not run by
`make test`; `benchmarks/run.py scale` or alone:

    DATABASE_URL=postgres://... .venv/bin/python benchmarks/bench_scale.py [--devices 5000]
        [--rules 500] [--checks 1000] [--duration 300] [--interval 60] [--record FILE]

Sets up a throwaway database of the configured engine (PostgreSQL when DATABASE_URL names
one) and its own Redis (the embedded redis-server on a socket in a temporary directory), then:
- `--rules` alert rules on the devices' four metrics, a few of which some devices cross
  all along, and one (`scale-temperature-critical`, temperature > 90, no duration) that a
  controlled set of devices cross at known times; every rule notifies one webhook channel
  pointing at a local receiver that timestamps what it receives;
- `--checks` HTTP health checks against a local HTTP server, and one heartbeat check per device;
- two web processes (daphne, each on its own port), two Celery workers and one beat, as
  separate processes with the production settings' DatabaseScheduler;
- `--devices` simulated devices (asyncio + httpx, in a child process) each pushing its four
  readings to `POST /api/metrics` with an API key and pinging its heartbeat URL once per
  `--interval` seconds, spread evenly, for `--duration` seconds.

Prints the ingestion throughput (samples accepted per second, requests per second and their
latency), the evaluation lag and the notification latency p50/p99 (from the push that crossed
the threshold to the alert firing in the database, and to the webhook's arrival), and the
peak memory (RSS, with its children) of every process; `--record FILE` appends the same
table in Markdown."""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from datetime import UTC, datetime
from pathlib import Path

# The spawned children (servers, fleet) import this module again: they reuse the parent's.
SCRATCH = os.environ.get("BENCH_SCALE_SCRATCH") or tempfile.mkdtemp(prefix="bench-scale-")
os.environ["BENCH_SCALE_SCRATCH"] = SCRATCH
# Set before Django reads its settings: this run's own embedded Redis and secret key.
os.environ.pop("REDIS_URL", None)
os.environ["MONITORING_VAR_DIR"] = SCRATCH
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets up Django)
import psutil  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection, connections  # noqa: E402

from alerts.models import Alert, AlertRule  # noqa: E402
from healthchecks.choices import CheckKind  # noqa: E402
from healthchecks.models import HealthCheck, HealthCheckResult  # noqa: E402
from monitoring.apikeys import create_api_key  # noqa: E402
from monitoring.models import GlobalSettings, Sample  # noqa: E402
from notifications.choices import ChannelKind  # noqa: E402
from notifications.models import NotificationChannel  # noqa: E402

METRICS = ("device_temperature_celsius", "device_cpu_percent", "device_battery_percent", "device_rssi_dbm")
SITES = 50
CROSSING_RULE = "scale-temperature-critical"
CROSSING_THRESHOLD = 90.0
CROSSING_PER_ROUND = 5
CROSSING_EVERY_S = 15.0
WARMUP_S = 30.0  # before the first crossing: the first rounds of checks and evaluations settle
DRAIN_S = 30.0  # after the devices stop: notifications still on their way
FLEET_GRACE_S = 30.0  # after the last send: requests still waiting are given up (and counted)
# Connections the fleet keeps open to each web process. Each request in flight holds a
# database connection in daphne's thread for sync views: the shared PostgreSQL allows 100.
CONNECTIONS_PER_WEB = 8


def device_labels(device: int) -> dict[str, str]:
    return {"device_id": f"dev-{device:05d}", "site": f"site-{device % SITES:02d}"}


def readings(device: int, hot: bool) -> dict[str, float]:
    """A device's four readings. One device in 250 reports a low battery and one in 500 a busy
    CPU all along (background alerts); a crossed device reports 95 degrees."""
    return {
        "device_temperature_celsius": 95.0 if hot else 20.0 + device % 15 + random.random(),
        "device_cpu_percent": 97.0 if device % 500 == 3 else 5.0 + random.random() * 50,
        "device_battery_percent": 3.0 if device % 250 == 7 else 50.0 + device % 50,
        "device_rssi_dbm": -60.0 - device % 20,
    }


# --- local servers: HTTP checks' endpoint and the webhook receiver (a child process) -------------


def run_servers(check_port: int, hook_port: int, hook_log: str, ready: multiprocessing.Event) -> None:
    from aiohttp import web

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def hook(request: web.Request) -> web.Response:
        received = time.time()
        body = await request.json()
        with open(hook_log, "a") as log:
            log.write(json.dumps({"received": received, "body": body}) + "\n")
        return web.Response(text="ok")

    async def main() -> None:
        checks, hooks = web.Application(), web.Application()
        checks.router.add_get("/health/{n}", health)
        hooks.router.add_post("/hook", hook)
        for app, port in ((checks, check_port), (hooks, hook_port)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the fleet (a child process) ----------------------------------------------------------------


def run_fleet(args: dict, out: multiprocessing.Queue) -> None:
    """Every device pushes its readings and pings its heartbeat once per interval, at its own
    phase; controlled devices start reporting 95 degrees at known times (pushed at once)."""
    asyncio.run(_fleet(args, out))


async def _fleet(args: dict, out: multiprocessing.Queue) -> None:
    import httpx

    devices, interval, duration = args["devices"], args["interval"], args["duration"]
    ports, key, pings = args["ports"], args["key"], args["pings"]
    clients = [
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"X-API-Key": key},
            timeout=60,
            limits=httpx.Limits(max_connections=CONNECTIONS_PER_WEB, max_keepalive_connections=CONNECTIONS_PER_WEB),
        )
        for port in ports
    ]
    # The crossing pushes go on connections of their own, so their latency is the system's
    # (the server's queue included), not the fleet's wait for a free connection.
    alarm_clients = [
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=120)
        for port in ports
    ]
    hot: set[int] = set()
    crossings: dict[int, tuple[float, float]] = {}
    latencies: dict[str, list[float]] = {"push": [], "heartbeat": []}
    failures: dict[str, int] = {}
    accepted = [0]
    # Requests wait in a queue per web process, served by CONNECTIONS_PER_WEB senders each:
    # thousands of requests waiting inside httpx's own pool made the client the bottleneck.
    queues: list[asyncio.Queue] = [asyncio.Queue() for _ in ports]
    alarms: set[asyncio.Task] = set()

    async def send(client: httpx.AsyncClient, kind: str, device: int) -> tuple[httpx.Response, float] | None:
        now = time.time()
        try:
            if kind == "push":
                samples = [
                    {"metric": metric, "labels": device_labels(device), "value": value, "timestamp": now}
                    for metric, value in readings(device, device in hot).items()
                ]
                response = await client.post("/api/metrics", json={"samples": samples})
                if response.status_code == 200:
                    accepted[0] += response.json()["accepted"]
            else:
                response = await client.post(f"/api/heartbeat/{pings[device]}")
        except httpx.HTTPError as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            return None
        if response.status_code != 200:
            failure = f"{kind} HTTP {response.status_code}"
            failures[failure] = failures.get(failure, 0) + 1
        return response, now

    async def sender(client: httpx.AsyncClient, queue: asyncio.Queue) -> None:
        while True:
            kind, device, wanted_at = await queue.get()
            if await send(client, kind, device) is not None:
                # Timed from the moment the device wanted to send: the wait in the queue is
                # what a saturated server costs its clients.
                latencies[kind].append(time.perf_counter() - wanted_at)
            queue.task_done()

    async def cross(device: int) -> None:
        # On a connection of its own: the latency is the system's, not the fleet's queue.
        sent = await send(alarm_clients[device % len(ports)], "push", device)
        if sent is not None and sent[0].status_code == 200:
            crossings[device] = (sent[1], time.time())  # sent, answered

    def launch(kind: str, device: int) -> None:
        queues[device % len(ports)].put_nowait((kind, device, time.perf_counter()))

    senders = [
        asyncio.create_task(sender(client, queue))
        for client, queue in zip(clients, queues, strict=True)
        for _ in range(CONNECTIONS_PER_WEB)
    ]

    phases = [random.random() * interval for _ in range(devices)]
    order = sorted(range(devices), key=phases.__getitem__)
    controlled = list(range(0, devices, max(1, devices // 200)))[:200]  # spread over the sites
    random.shuffle(controlled)
    start = time.monotonic()
    next_crossing = start + min(WARMUP_S, duration / 3)
    position, cycle = 0, 0
    while (elapsed := time.monotonic() - start) < duration:
        # Devices whose phase in the current interval has come.
        while position < devices and cycle * interval + phases[order[position]] <= elapsed:
            device = order[position]
            launch("push", device)
            launch("heartbeat", device)
            position += 1
        if position == devices:
            position, cycle = 0, cycle + 1
        if time.monotonic() >= next_crossing and controlled:
            for _ in range(min(CROSSING_PER_ROUND, len(controlled))):
                device = controlled.pop()
                hot.add(device)
                task = asyncio.create_task(cross(device))
                alarms.add(task)
                task.add_done_callback(alarms.discard)
            next_crossing += CROSSING_EVERY_S
        await asyncio.sleep(0.02)
    # What the senders have not taken by the end of the grace time is given up (and counted).
    grace_until = time.monotonic() + FLEET_GRACE_S
    while any(queue.qsize() for queue in queues) and time.monotonic() < grace_until:
        await asyncio.sleep(0.2)
    unanswered = sum(queue.qsize() for queue in queues)
    if alarms:
        await asyncio.wait(alarms, timeout=FLEET_GRACE_S)
    await asyncio.sleep(1)  # requests already on the wire
    for task in senders:
        task.cancel()
    for client in clients + alarm_clients:
        await client.aclose()
    out.put(
        {
            "elapsed": time.monotonic() - start,
            "latencies": latencies,
            "failures": failures,
            "accepted": accepted[0],
            "unanswered": unanswered,
            "crossings": {device_labels(d)["device_id"]: at for d, at in crossings.items()},
        }
    )


# --- the system's processes ---------------------------------------------------------------------


def system_commands(web_ports: list[int], workers: int) -> dict[str, list[str]]:
    python = sys.executable
    commands = {
        f"web {n + 1} (daphne :{port})": [
            python,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "config.asgi:application",
        ]
        for n, port in enumerate(web_ports)
    }
    for n in range(workers):
        commands[f"worker {n + 1} (celery, 1 pool process)"] = [
            python, "-m", "celery", "-A", "config", "worker", "--loglevel", "WARNING",
            "--concurrency", "1", "--hostname", f"scale-{n + 1}@%h",
        ]  # fmt: skip
    commands["beat (celery)"] = [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING"]
    return commands


def tree_rss(process: psutil.Process) -> int:
    """RSS of a process and its descendants (a Celery worker's pool), in bytes."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with suppress(psutil.Error):  # exited meanwhile
            total += member.memory_info().rss
    return total


# --- set-up ------------------------------------------------------------------------------------


def set_up(args: argparse.Namespace, check_port: int, hook_port: int) -> tuple[str, list[str]]:
    """The rules, channel, checks and API key. Returns (plain key, heartbeat uuids by device)."""
    GlobalSettings.load()
    channel = NotificationChannel.objects.create(
        name="scale receiver", key="scale-webhook", kind=ChannelKind.WEBHOOK,
        config={"url": f"http://127.0.0.1:{hook_port}/hook"},
    )  # fmt: skip
    rules = [
        AlertRule(
            name="Device too hot", key=CROSSING_RULE, metric=METRICS[0], comparison=">",
            threshold=CROSSING_THRESHOLD, duration=0, severity="critical",
        )
    ]  # fmt: skip
    # The rest: per site and metric, thresholds that one device in 250 (battery) or 500 (CPU)
    # crosses all along; temperature and signal ones nobody crosses.
    kinds = [
        (METRICS[2], "<", 5.0),
        (METRICS[1], ">", 95.0),
        (METRICS[0], ">", 120.0),
        (METRICS[3], "<", -110.0),
    ]
    for n in range(args.rules - 1):
        metric, comparison, threshold = kinds[n % len(kinds)]
        rules.append(
            AlertRule(
                name=f"scale rule {n}", key=f"scale-rule-{n}", metric=metric, comparison=comparison,
                threshold=threshold, duration=60 * (n % 2), severity="medium",
                matchers={"site": f"site-{(n // len(kinds)) % SITES:02d}"},
            )
        )  # fmt: skip
    AlertRule.objects.bulk_create(rules)
    for rule in AlertRule.objects.all():
        rule.channels.add(channel)
    HealthCheck.objects.bulk_create(
        [
            HealthCheck(
                name=f"endpoint {n}", key=f"scale-http-{n}", kind=CheckKind.HTTP, interval=60, timeout=5,
                config={"url": f"http://127.0.0.1:{check_port}/health/{n}"},
            )
            for n in range(args.checks)
        ]
        + [
            HealthCheck(
                name=f"heartbeat of {device_labels(d)['device_id']}", key=f"scale-heartbeat-{d}",
                kind=CheckKind.HEARTBEAT, interval=args.interval, period=args.interval, grace=args.interval,
            )
            for d in range(args.devices)
        ],
        batch_size=1000,
    )  # fmt: skip
    pings = dict(HealthCheck.objects.filter(kind=CheckKind.HEARTBEAT).values_list("key", "ping_uuid"))
    user = User.objects.create_user("scale-fleet", password="not-used-here-0")
    user.groups.add(Group.objects.get(name="viewer"))
    key = create_api_key(user=user, name="scale fleet").plain
    return key, [str(pings[f"scale-heartbeat-{d}"]) for d in range(args.devices)]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--rules", type=int, default=500)
    parser.add_argument("--checks", type=int, default=1000, help="HTTP checks (heartbeat checks: one per device)")
    parser.add_argument("--duration", type=float, default=300, help="seconds the devices push")
    parser.add_argument("--interval", type=int, default=60, help="seconds between a device's pushes (and pings)")
    parser.add_argument("--web", type=int, default=2, help="web processes")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--record", help="append the results in Markdown to this file")
    args = parser.parse_args()
    command = "benchmarks/bench_scale.py " + " ".join(sys.argv[1:])

    finished = {"ok": False}
    with ExitStack() as stack:
        # Runs last: the scratch directory goes once everything stopped, unless the run failed
        # (then it keeps the processes' logs).
        stack.callback(lambda: finished["ok"] and shutil.rmtree(SCRATCH, ignore_errors=True))
        stack.enter_context(common.redis_running())
        stack.enter_context(common.throwaway_database())
        print(f"{connection.vendor}: {common.load_average()}", flush=True)
        check_port, hook_port = common.free_port(), common.free_port()
        hook_log = str(Path(SCRATCH) / "hooks.jsonl")
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        servers = context.Process(target=run_servers, args=(check_port, hook_port, hook_log, ready), daemon=True)
        servers.start()
        stack.callback(servers.terminate)
        assert ready.wait(30), "the local servers did not start"

        started = time.perf_counter()
        key, pings = set_up(args, check_port, hook_port)
        print(
            f"set up in {time.perf_counter() - started:.0f} s: {args.rules} rules, {args.checks} HTTP checks, "
            f"{args.devices} heartbeat checks, {args.devices} devices every {args.interval} s",
            flush=True,
        )
        connections.close_all()  # the children open their own

        env = {
            **os.environ,
            "DATABASE_URL": common.database_url(),
            "MONITORING_VAR_DIR": SCRATCH,
            "LOG_LEVEL": "WARNING",
            "DB_CONN_MAX_AGE": "0",  # daphne runs each request's sync view in a thread of its own
            # One address and one key for the whole fleet: budgets as for 5,000 clients.
            "API_THROTTLE_INGEST": "10000000/minute",
            "API_THROTTLE_HEARTBEAT": "10000000/minute",
            "API_THROTTLE_KEY": "10000000/minute",
            "API_THROTTLE_ANON": "10000000/minute",
        }
        web_ports = [common.free_port() for _ in range(args.web)]
        processes: dict[str, psutil.Popen] = {}
        logs = Path(SCRATCH) / "logs"
        logs.mkdir()
        for name, argv in system_commands(web_ports, args.workers).items():
            log = open(logs / f"{name.split(' (')[0].replace(' ', '-')}.log", "wb")  # noqa: SIM115
            stack.callback(log.close)
            processes[name] = psutil.Popen(argv, cwd=common.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(_stop, processes[name])
        wait_listening(processes, web_ports, logs)

        out = context.Queue()
        fleet = context.Process(
            target=run_fleet,
            args=(
                {"devices": args.devices, "interval": args.interval, "duration": args.duration,
                 "ports": web_ports, "key": key, "pings": pings},
                out,
            ),
        )  # fmt: skip
        peak = {name: 0 for name in processes}
        fleet_started = time.time()
        fleet.start()
        deadline = time.monotonic() + args.duration + FLEET_GRACE_S + 120
        report = None
        while report is None:
            for name, process in processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}; see {logs}")
                peak[name] = max(peak[name], tree_rss(process))
            try:
                report = out.get(timeout=1)
            except Exception:  # noqa: BLE001  (queue.Empty: keep sampling)
                if time.monotonic() > deadline:
                    raise RuntimeError("the fleet did not finish") from None
        fleet.join()
        drain_until = time.monotonic() + DRAIN_S
        while time.monotonic() < drain_until:
            for name, process in processes.items():
                peak[name] = max(peak[name], tree_rss(process))
            time.sleep(1)

        results = measure(report, hook_log, fleet_started, args)
        finished["ok"] = True
        results["peak"] = peak
        text = render(results, args, command)
        print(text)
        if args.record:
            with open(args.record, "a") as record:
                record.write(text + "\n")


def wait_listening(processes: dict[str, psutil.Popen], ports: list[int], logs: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}; see {logs}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing listens on {port} after {timeout} s; see {logs}") from None
                time.sleep(0.3)


def _stop(process: psutil.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except (psutil.TimeoutExpired, subprocess.TimeoutExpired):
            for child in process.children(recursive=True):
                child.kill()
            process.kill()


def measure(report: dict, hook_log: str, fleet_started: float, args: argparse.Namespace) -> dict:
    """Figures from the fleet's report, the database and the receiver's log."""
    crossings: dict[str, list[float]] = report["crossings"]  # device -> [sent, answered]
    fired = {
        alert.labels.get("device_id"): alert.fired_at.timestamp()
        for alert in Alert.objects.filter(rule__key=CROSSING_RULE, fired_at__isnull=False)
    }
    received: dict[str, float] = {}
    notified_alerts = 0
    if os.path.exists(hook_log):
        with open(hook_log) as log:
            for line in log:
                entry = json.loads(line)
                for alert in entry["body"].get("alerts", []):
                    notified_alerts += 1
                    device = alert.get("labels", {}).get("device_id")
                    if alert.get("rule") == CROSSING_RULE and entry["body"].get("event") == "firing":
                        received.setdefault(device, entry["received"])
    evaluation = [fired[d] - sent for d, (sent, _) in crossings.items() if d in fired]
    notification = [received[d] - sent for d, (sent, _) in crossings.items() if d in received]
    stored = [answered - sent for sent, answered in crossings.values()]
    samples = Sample.objects.filter(ts__gte=int(fleet_started * 1000)).count()
    checks_done = HealthCheckResult.objects.filter(
        checked_at__gte=datetime.fromtimestamp(fleet_started, UTC), health_check__kind=CheckKind.HTTP
    ).count()
    return {
        "elapsed": report["elapsed"],
        "samples": samples,
        "accepted": report["accepted"],
        "offered_requests": 2 * args.devices * args.duration / args.interval,
        "latencies": report["latencies"],
        "failures": {
            **report["failures"],
            **({"given up at the end": report["unanswered"]} if report["unanswered"] else {}),
        },
        "crossings": len(crossings),
        "evaluation": evaluation,
        "notification": notification,
        "crossing_answered": stored,
        "notified_alerts": notified_alerts,
        "http_results": checks_done,
        "alerts_firing": Alert.objects.filter(fired_at__isnull=False).count(),
    }


def render(results: dict, args: argparse.Namespace, command: str) -> str:
    elapsed = results["elapsed"]
    push, beat = results["latencies"]["push"], results["latencies"]["heartbeat"]
    answered = len(push) + len(beat)
    evaluation, notification = results["evaluation"], results["notification"]

    def ms(values: list[float]) -> str:
        return f"{percentile(values, 0.5) * 1000:,.0f} / {percentile(values, 0.99) * 1000:,.0f} ms"

    def seconds(values: list[float]) -> str:
        return f"{percentile(values, 0.5):.2f} / {percentile(values, 0.99):.2f} s"

    failures = ", ".join(f"{kind}: {count}" for kind, count in sorted(results["failures"].items()))
    rows = [
        ("devices / rules / HTTP checks / heartbeat checks", f"{args.devices:,} / {args.rules} / {args.checks:,}"
         f" / {args.devices:,}"),
        ("run", f"{args.duration:.0f} s of sends (a push and a ping per device every {args.interval} s),"
         f" {elapsed:.0f} s with the queue's grace; rates below are over the {elapsed:.0f} s"),
        ("samples stored (accepted by the API)", f"{results['samples']:,} ({results['accepted']:,})"
         f" = {results['samples'] / elapsed:,.0f} samples/s"),
        ("requests answered (offered)", f"{answered:,} ({results['offered_requests']:,.0f})"
         f" = {answered / elapsed:,.0f} requests/s"),
        ("push latency p50 / p99", ms(push)),
        ("heartbeat latency p50 / p99", ms(beat)),
        ("failed requests", failures or "none"),
        ("HTTP check results recorded", f"{results['http_results']:,} (due: about {args.checks * elapsed / 60:,.0f})"),
        ("threshold crossings (alerts fired / webhooks received)", f"{results['crossings']}"
         f" ({len(evaluation)} / {len(notification)})"),
        ("crossing push sent to its answer (sample stored), p50 / p99", seconds(results["crossing_answered"])),
        ("evaluation lag: crossing push sent to alert fired, p50 / p99", seconds(evaluation)),
        ("notification latency: crossing push sent to webhook received, p50 / p99", seconds(notification)),
        ("alerts fired in all (alerts in the webhooks received)", f"{results['alerts_firing']:,}"
         f" ({results['notified_alerts']:,})"),
    ]  # fmt: skip
    rows += [(f"peak RSS, {name}", f"{rss / 2**20:,.0f} MiB") for name, rss in results["peak"].items()]
    width = max(len(label) for label, _ in rows)
    print("\n".join(f"  {label:<{width}}  {value}" for label, value in rows))
    return "\n".join(
        [
            f"### Scale run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({connection.vendor}, {common.load_average()})",
            "",
            f"    {command}",
            "",
            "| | |",
            "| --- | --- |",
            *(f"| {label} | {value} |" for label, value in rows),
        ]
    )


if __name__ == "__main__":
    main()
