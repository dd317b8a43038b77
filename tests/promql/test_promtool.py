"""Prometheus' own client against a live server: `promtool query instant|range|series|labels`
parse our answers, and a real Daphne serves the API on the main port and on the
prometheus port from one process."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from .conftest import T0

PROMTOOL = shutil.which("promtool") or "promtool"


@pytest.fixture
def viewer_key(transactional_db) -> str:
    # A transactional test's flush drops the role groups the data migration made: make them.
    from django.contrib.auth.models import Group, Permission, User

    from monitoring.apikeys import create_api_key
    from monitoring.choices import Role
    from monitoring.roles import sync_role_groups

    sync_role_groups(Group, Permission)
    user = User.objects.create_user("grafana")
    user.groups.add(Group.objects.get(name=Role.VIEWER.value))
    return create_api_key(user=user, name="grafana").plain


@pytest.fixture
def server(live_server, load, viewer_key) -> tuple[str, str]:
    """(base URL of the API on a live server, a viewer's API key), with samples loaded."""
    load('up{job="api",instance="a"}', [(0, 1), (60, 1), (120, 0)])
    load('up{job="api",instance="b"}', [(0, 1), (60, 1), (120, 1)])
    load('up{job="db",instance="c"}', [(0, 1), (60, 1), (120, 1)])
    load('requests_total{job="api"}', [(t, t * 3.0) for t in range(0, 301, 15)])
    return f"{live_server.url}/prometheus", viewer_key


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


def with_basic_auth(url: str, key: str) -> str:
    # promtool 2.42's instant queries cannot send headers; Go sends URL credentials as basic auth.
    scheme, rest = url.split("://", 1)
    return f"{scheme}://grafana:{key}@{rest}"


def test_promtool_query_instant(server):
    url, key = server
    done = promtool("query", "instant", "-o", "json", "--time", str(T0 + 120), with_basic_auth(url, key),
                    "sum by (job) (up)")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = {item["metric"]["job"]: item["value"] for item in json.loads(done.stdout)}
    assert result == {"api": [T0 + 120, "1"], "db": [T0 + 120, "1"]}

    done = promtool("query", "instant", "--time", str(T0 + 120), with_basic_auth(url, key), "up == 0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f'up{{instance="a", job="api"}} => 0 @[{T0 + 120}]'


def test_promtool_query_instant_scalar(server):
    url, key = server
    done = promtool("query", "instant", "-o", "json", "--time", str(T0), with_basic_auth(url, key), "2 * 21")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [T0, "42"]


def test_promtool_query_range(server):
    url, key = server
    done = promtool("query", "range", "-o", "json", "--header", f"X-API-Key={key}", "--start", str(T0 + 60),
                    "--end", str(T0 + 300), "--step", "1m", url, "rate(requests_total[1m])")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (series,) = json.loads(done.stdout)
    assert series["metric"] == {"job": "api"}
    # 3 per second, every minute from 60 to 300 s.
    assert series["values"] == [[T0 + t, "3"] for t in range(60, 301, 60)]


def test_promtool_query_range_with_a_bearer_token(server):
    url, key = server
    done = promtool("query", "range", "-o", "json", "--header", f"Authorization=Bearer {key}", "--start", str(T0),
                    "--end", str(T0 + 120), "--step", "60s", url, 'up{job="api"}')  # fmt: skip
    assert done.returncode == 0, done.stderr
    values = {item["metric"]["instance"]: item["values"] for item in json.loads(done.stdout)}
    assert values == {
        "a": [[T0, "1"], [T0 + 60, "1"], [T0 + 120, "0"]],
        "b": [[T0, "1"], [T0 + 60, "1"], [T0 + 120, "1"]],
    }


def test_promtool_series_and_labels(server):
    url, key = server
    done = promtool("query", "series", "-o", "json", "--match", 'up{job="db"}', with_basic_auth(url, key))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"__name__": "up", "instance": "c", "job": "db"}]
    done = promtool("query", "labels", "-o", "json", with_basic_auth(url, key), "job")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["api", "db"]


def test_promtool_reports_our_errors(server):
    url, key = server
    done = promtool("query", "instant", with_basic_auth(url, key), "sum(up")
    assert done.returncode != 0
    assert "bad_data" in done.stderr and "unexpected end of input" in done.stderr
    done = promtool("query", "instant", url, "up")  # no key
    assert done.returncode != 0 and "401" in done.stderr + done.stdout


# --- one Daphne process, two ports ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_daphne_serves_the_api_on_both_ports(tmp_path: Path):
    main_port, prometheus_port = free_port(), free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "MONITORING_VAR_DIR": str(tmp_path),
        # The queries below read no table: an empty database file is enough.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": settings.REDIS_URL,
        "MONITORING_PROMETHEUS_PORT": str(prometheus_port),
        "MONITORING_PROMETHEUS_ANONYMOUS": "true",
    }
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(main_port),
               "-e", f"tcp:port={prometheus_port}:interface=127.0.0.1", "config.asgi:application"]  # fmt: skip
    log = (tmp_path / "daphne.log").open("w")
    process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{prometheus_port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "daphne.log").read_text()
                time.sleep(0.2)
        on_prometheus = httpx.post(
            f"http://127.0.0.1:{prometheus_port}/api/v1/query", data={"query": "1 + 1", "time": "100"}
        )
        assert on_prometheus.json() == {"status": "success", "data": {"resultType": "scalar", "result": [100, "2"]}}
        on_main = httpx.get(
            f"http://127.0.0.1:{main_port}/prometheus/api/v1/query", params={"query": "2*3", "time": "1"}
        )
        assert on_main.json()["data"]["result"] == [1, "6"]
        build = httpx.get(f"http://127.0.0.1:{prometheus_port}/api/v1/status/buildinfo").json()
        assert build["data"]["version"] == "2.42.0"
        # On the main port /api/ is the REST API: no Prometheus API at /api/v1/.
        rest = httpx.get(f"http://127.0.0.1:{main_port}/api/v1/query", params={"query": "1"})
        assert rest.status_code == 404 and "status" not in rest.json()
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
