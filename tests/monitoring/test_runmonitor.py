"""`manage.py runmonitor`: the first-start bootstrap, and the whole supervised group started
as a subprocess (one of each process, or several web processes on one port, several workers
and a standby beat), answering, and stopped by SIGTERM with nothing left behind."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import User

from monitoring.bootstrap import ADMIN_USERNAME, bootstrap
from monitoring.choices import Role
from monitoring.embedded_redis import is_answering
from monitoring.models import MonitoringTarget

STARTUP_DEADLINE = 50.0  # seconds for the whole group to come up


# --- bootstrap ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_first_start_imports_the_demo_config_and_creates_the_admin():
    result = bootstrap(demo_config=settings.MONITORING_DEMO_CONFIG, admin_password="")

    admin = User.objects.get(username=ADMIN_USERNAME)
    assert result.first_start
    assert result.admin_password and admin.check_password(result.admin_password)
    assert admin.is_staff and admin.is_superuser
    assert list(admin.groups.values_list("name", flat=True)) == [Role.ADMIN.value]
    assert MonitoringTarget.objects.filter(slug="monitoring_web").exists()


@pytest.mark.django_db
def test_later_starts_change_nothing_and_show_no_password():
    bootstrap(demo_config=None, admin_password="first-password-1")
    User.objects.filter(username=ADMIN_USERNAME).update(first_name="kept")

    again = bootstrap(demo_config=settings.MONITORING_DEMO_CONFIG, admin_password="other-password-2")

    assert not again.first_start and again.admin_password is None
    admin = User.objects.get(username=ADMIN_USERNAME)
    assert admin.check_password("first-password-1") and admin.first_name == "kept"
    assert not MonitoringTarget.objects.exists()  # the demo is imported on the first start only


@pytest.mark.django_db
def test_the_password_from_the_environment_is_used_and_not_shown():
    result = bootstrap(demo_config=None, admin_password="from-env-password-3")

    assert result.admin_password is None and result.password_source == "MONITORING_ADMIN_PASSWORD"
    assert User.objects.get(username=ADMIN_USERNAME).check_password("from-env-password-3")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "99999"], "not a port number"),
        (["--concurrency", "0"], "at least 1"),
        (["--web", "0"], "at least 1"),
        (["--workers", "two"], "'two' is not a whole number"),
        (["--beat", "-1"], "at least 1"),
    ],
)
def test_bad_command_line_exits_with_2(argv, message, tmp_path):
    done = subprocess.run(
        [sys.executable, "manage.py", "runmonitor", *argv],
        cwd=settings.BASE_DIR,
        env=runmonitor_env(tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert message in done.stderr


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "manage.py", "runmonitor", "--host", "127.0.0.1", "--port", str(port)],
            cwd=settings.BASE_DIR,
            env=runmonitor_env(tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert not is_answering(tmp_path / "redis.sock")  # its embedded Redis was stopped again


# --- the supervised group -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def database_url(tmp_path) -> Iterator[str]:
    """A database of its own: an SQLite file, or a fresh PostgreSQL database on the server
    the suite runs on."""
    if not settings.IS_POSTGRES:
        yield f"sqlite:///{tmp_path / 'monitoring.sqlite3'}"
        return
    db = settings.DATABASES["default"]
    name = f"runmonitor_{uuid.uuid4().hex[:12]}"
    server = {"host": db["HOST"], "port": db["PORT"] or 5432, "user": db["USER"], "password": db["PASSWORD"] or None}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        credentials = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
        yield f"postgres://{credentials}@{db['HOST']}:{server['port']}/{name}"
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def runmonitor_env(var_dir: Path, *, database_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("LOG_LEVEL", "MONITORING_LOG_FILE")}
    env |= {
        "MONITORING_VAR_DIR": str(var_dir),
        "DATABASE_URL": database_url,
        "MONITORING_ADMIN_PASSWORD": "runmonitor-test-password",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        # Its beats lead among themselves, not against other runs sharing the Redis server.
        "MONITORING_BEAT_LOCK_KEY": f"runmonitor-test:{uuid.uuid4().hex}",
    }
    if settings.EMBEDDED_REDIS:
        env.pop("REDIS_URL", None)
    return env


def ping_worker(env: dict[str, str], node_prefix: str) -> list[str]:
    """Celery ping through the broker the settings give `env`; the names of the replying
    nodes that start with `node_prefix`."""
    script = (
        "import django, json; django.setup(); from config.celery import app; "
        "print(json.dumps([name for reply in app.control.ping(timeout=1.0) for name in reply]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        return []
    names = json.loads(done.stdout.strip().splitlines()[-1])
    return [name for name in names if name.startswith(node_prefix)]


def descendants(pid: int) -> dict[int, psutil.Process]:
    try:
        return {child.pid: child for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return {}


def still_alive(processes: dict[int, psutil.Process]) -> list[str]:
    alive = []
    for process in processes.values():
        try:
            # is_running() compares start times, so a reused pid does not count; a zombie
            # has exited and only waits for its new parent to reap it.
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{process.pid} {' '.join(process.cmdline()[:6])}")
        except psutil.NoSuchProcess:
            pass
    return alive


def test_runmonitor_serves_runs_a_worker_and_stops_everything_on_sigterm(tmp_path, database_url):
    port, metrics_port = free_port(), free_port()
    env = runmonitor_env(tmp_path, database_url=database_url)
    output = tmp_path / "runmonitor.out"
    with output.open("w") as out:
        runmonitor = subprocess.Popen(
            [sys.executable, "manage.py", "runmonitor", "--host", "127.0.0.1", "--port", str(port)]
            + ["--prometheus-port", str(metrics_port), "--concurrency", "1", "--stop-timeout", "20"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    started: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        login_status = None
        while time.monotonic() < deadline and login_status != 200:
            assert runmonitor.poll() is None, output.read_text()
            started |= descendants(runmonitor.pid)
            try:
                login_status = httpx.get(f"http://127.0.0.1:{port}/admin/login/", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.3)
        assert login_status == 200, output.read_text()

        node = f"runmonitor-{runmonitor.pid}@"
        replies: list[str] = []
        while time.monotonic() < deadline and not replies:
            started |= descendants(runmonitor.pid)
            replies = ping_worker(env, node)
        assert replies, f"no Celery worker {node}* answered a ping\n{output.read_text()}"

        # /metrics's second endpoint is the same server on the prometheus port.
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5).status_code == 200
        assert_admin_login_works(port, "runmonitor-test-password")

        started |= descendants(runmonitor.pid)
        commands = [" ".join(p.cmdline()) for p in started.values() if p.is_running()]
        assert any("daphne" in c for c in commands) and any(" worker " in c for c in commands)
        assert any(" beat " in c for c in commands)
        assert any("redis-server" in c for c in commands) == settings.EMBEDDED_REDIS, commands

        runmonitor.send_signal(signal.SIGTERM)
        assert runmonitor.wait(timeout=30) == 0, output.read_text()
    finally:
        if runmonitor.poll() is None:
            runmonitor.kill()
            runmonitor.wait()
            for process in started.values():  # leave nothing behind even when the test fails
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()

    assert still_alive(started) == [], output.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert not is_answering(tmp_path / "redis.sock")

    log_text = (tmp_path / "monitoring.log").read_text()
    for component in ("runmonitor", "daphne.server", "celery.apps.worker", "celery.beat"):
        assert f" INFO {component} " in log_text, f"no INFO line from {component} in monitoring.log"
    assert "log level INFO (from the global settings' log_level)" in log_text
    assert "Stopped." in output.read_text()
    assert "killing it" not in log_text  # each process stopped cleanly on SIGTERM


def assert_admin_login_works(port: int, password: str) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        client.get("/admin/login/")
        response = client.post(
            "/admin/login/?next=/admin/",
            data={
                "username": ADMIN_USERNAME,
                "password": password,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
                "next": "/admin/",
            },
            headers={"Referer": f"http://127.0.0.1:{port}/admin/login/"},
            follow_redirects=True,
        )
        assert "sessionid" in client.cookies  # logged in, not sent back to the form
    assert response.status_code == 200
    assert response.url.path == "/admin/"
    assert "/admin/logout/" in response.text


def direct_children(pid: int) -> dict[str, list[psutil.Process]]:
    """runmonitor's own children by kind: web (daphne), worker, beat."""
    kinds: dict[str, list[psutil.Process]] = {"web": [], "worker": [], "beat": []}
    for child in psutil.Process(pid).children():
        command = " ".join(child.cmdline())
        if "daphne" in command:
            kind = "web"
        elif " worker " in command or " beat " in command:
            kind = "worker" if " worker " in command else "beat"
        else:
            continue
        kinds[kind].append(child)
    return kinds


def get_status(url: str) -> int:
    with httpx.Client(timeout=5) as client:  # a new connection per request
        return client.get(url).status_code


def test_several_web_processes_share_the_port_workers_answer_and_one_beat_leads(tmp_path, database_url):
    port, metrics_port = free_port(), free_port()
    env = runmonitor_env(tmp_path, database_url=database_url) | {"MONITORING_PROMETHEUS_ANONYMOUS": "true"}
    output = tmp_path / "runmonitor.out"
    with output.open("w") as out:
        runmonitor = subprocess.Popen(
            [sys.executable, "manage.py", "runmonitor", "--host", "127.0.0.1", "--port", str(port)]
            + ["--prometheus-port", str(metrics_port), "--web", "2", "--workers", "2", "--beat", "2"]
            + ["--concurrency", "1", "--stop-timeout", "20", "--no-bootstrap"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    started: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline and "Press Ctrl-C to stop." not in output.read_text():
            assert runmonitor.poll() is None, output.read_text()
            time.sleep(0.3)
        assert "Press Ctrl-C to stop." in output.read_text(), output.read_text()
        started |= descendants(runmonitor.pid)
        kinds = direct_children(runmonitor.pid)
        assert {kind: len(processes) for kind, processes in kinds.items()} == {"web": 2, "worker": 2, "beat": 2}
        assert f"2 web on port {port}, 2 worker(s) of 1, 2 beat (one leads, 1 standing by)" in output.read_text()

        # Each web process serves the shared port on its own: stop one, the other answers.
        for paused in kinds["web"]:
            paused.suspend()
            try:
                assert get_status(f"http://127.0.0.1:{port}/healthz") == 200
                assert get_status(f"http://127.0.0.1:{metrics_port}/healthz") == 200
            finally:
                paused.resume()

        node = f"runmonitor-{runmonitor.pid}"
        replies: list[str] = []
        while time.monotonic() < deadline + 30 and len(replies) < 2:
            replies = ping_worker(env, node)
        assert sorted(name.split("@")[0] for name in replies) == [node, f"{node}-2"], output.read_text()

        # One beat holds the lock; its token names its pid. The other stands by.
        beat_pids = {process.pid for process in kinds["beat"]}
        holder = leader_token(env)
        assert holder is not None and int(holder.split(":")[1]) in beat_pids, holder
        assert "stands by" in (tmp_path / "monitoring.log").read_text()

        # The leader's runs reach the workers and are claimed per window (health check
        # dispatch: every 10 s by default).
        runs: list[dict] = []
        while time.monotonic() < deadline + 60 and not any(run["ok"] for run in runs):
            runs = periodic_runs(env, "healthchecks.tasks.dispatch_due_checks_task")
            time.sleep(1)
        assert any(run["ok"] and run["window_start"] % 10 == 0 for run in runs), runs

        # --prometheus-port reaches the web processes: /api/v1/ there is Prometheus' API.
        buildinfo = httpx.get(f"http://127.0.0.1:{metrics_port}/api/v1/status/buildinfo", timeout=5)
        assert buildinfo.status_code == 200 and buildinfo.json()["status"] == "success", buildinfo.text

        started |= descendants(runmonitor.pid)
        runmonitor.send_signal(signal.SIGTERM)
        assert runmonitor.wait(timeout=40) == 0, output.read_text()
    finally:
        if runmonitor.poll() is None:
            runmonitor.kill()
            runmonitor.wait()
            for process in started.values():
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()

    assert still_alive(started) == [], output.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    log_text = (tmp_path / "monitoring.log").read_text()
    assert "killing it" not in log_text
    assert f"released by {holder}" in log_text  # the leader gave its lock up as it stopped


def leader_token(env: dict[str, str]) -> str | None:
    """Who holds the beat leader lock of `env`'s Redis, read by a process with that environment."""
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "from monitoring.redis import redis_client; "
        "value = redis_client().get(settings.MONITORING_BEAT_LOCK_KEY); print(value.decode() if value else '')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else None


def periodic_runs(env: dict[str, str], job: str) -> list[dict]:
    """The PeriodicRun rows of `job` in `env`'s database (window_start in epoch seconds)."""
    script = (
        "import django, json; django.setup(); from monitoring.models import PeriodicRun; "
        f"rows = PeriodicRun.objects.filter(job={job!r}).values('window_start', 'ok'); "
        "print(json.dumps([{'window_start': r['window_start'].timestamp(), 'ok': r['ok']} for r in rows]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
