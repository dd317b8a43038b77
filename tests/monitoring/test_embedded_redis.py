"""The embedded Redis: reused while its owner runs, adopted and stopped once its owner is
gone (a runmonitor killed with SIGKILL must not leave a redis-server behind for good)."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from monitoring.embedded_redis import is_answering, owner_file, start_embedded_redis, stop_embedded_redis

OWNER_SCRIPT = """
import sys, time
from pathlib import Path
from monitoring.embedded_redis import start_embedded_redis
process = start_embedded_redis(Path(sys.argv[1]))
print(process.pid, flush=True)
time.sleep(600)
"""


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # a short path: unix socket paths are limited to ~107 bytes
    with tempfile.TemporaryDirectory(prefix="er-") as directory:
        path = Path(directory) / "redis.sock"
        yield path
        for process in psutil.process_iter(["cmdline"]):
            if str(path) in " ".join(process.info["cmdline"] or []):
                process.kill()


def start_owner(socket_path: Path) -> tuple[subprocess.Popen, int]:
    """A separate process that starts the embedded Redis and keeps running; returns it and
    the redis-server's pid."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, str(socket_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    line = owner.stdout.readline()
    assert line.strip().isdigit(), f"owner printed {line!r}"
    return owner, int(line)


def test_a_server_whose_owner_runs_is_reused_and_left_alone(socket_path):
    owner, redis_pid = start_owner(socket_path)
    try:
        assert start_embedded_redis(socket_path) is None
        assert psutil.pid_exists(redis_pid) and is_answering(socket_path)
    finally:
        owner.kill()
        owner.wait()
        psutil.Process(redis_pid).kill()


def test_a_server_whose_owner_was_killed_is_adopted_and_stopped(socket_path):
    owner, redis_pid = start_owner(socket_path)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert is_answering(socket_path)  # the orphan the SIGKILL left behind

    adopted = start_embedded_redis(socket_path)

    assert adopted is not None and adopted.pid == redis_pid
    assert f'"owner": {os.getpid()}' in owner_file(socket_path).read_text()
    stop_embedded_redis(adopted)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(redis_pid) and psutil.Process(redis_pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the adopted redis-server is still running"
        time.sleep(0.05)
    assert not is_answering(socket_path)


def test_a_server_started_by_something_else_is_never_adopted(socket_path):
    started = start_embedded_redis(socket_path)
    assert started is not None
    try:
        owner_file(socket_path).unlink()  # no record of who started it
        assert start_embedded_redis(socket_path) is None
        assert started.poll() is None
    finally:
        stop_embedded_redis(started)
