"""What the benchmarks share: Django set up for the configured database, a throwaway copy of
that database, the embedded Redis when no REDIS_URL is set, and the way figures are printed.

Import it first in a benchmark script (it puts the project on sys.path and sets up Django)."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from monitoring.embedded_redis import start_embedded_redis, stop_embedded_redis  # noqa: E402


@contextmanager
def throwaway_database() -> Iterator[None]:
    """A fresh, migrated database of the configured engine (`test_<name>` on PostgreSQL, a
    temporary file on SQLite), dropped afterwards."""
    old_name = connection.settings_dict["NAME"]
    with tempfile.TemporaryDirectory() as tmp:
        if connection.vendor == "sqlite":
            connection.settings_dict.setdefault("TEST", {})["NAME"] = str(Path(tmp) / "bench.sqlite3")
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        try:
            yield
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)


@contextmanager
def redis_running() -> Iterator[None]:
    """The embedded Redis, as `make run` starts it, unless REDIS_URL names a server."""
    process = start_embedded_redis(settings.EMBEDDED_REDIS_SOCKET) if settings.EMBEDDED_REDIS else None
    try:
        yield
    finally:
        stop_embedded_redis(process)


def database_url() -> str:
    """A DATABASE_URL for the database this process is connected to (the throwaway one
    inside `throwaway_database()`), for server processes the benchmark starts."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server_process(command: list[str], port: int, env: dict[str, str], timeout: float = 60) -> Iterator[None]:
    """Run a server command until the block ends; waits until it accepts connections."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_listening(process, command[0], port, timeout, log)
            yield
        except Exception:
            log.seek(0)
            print(f"--- {command[0]} output (tail) ---\n{log.read().decode(errors='replace')[-3000:]}", file=sys.stderr)
            raise
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_listening(process: subprocess.Popen, name: str, port: int, timeout: float, log) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{name} exited: {log.read().decode(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not listen on {port} in {timeout} s") from None
            time.sleep(0.2)


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def rate_line(label: str, rows: int, seconds: float, baseline: float | None = None, target: float | None = None) -> str:
    """`label: N rows/s`, with the ratio to a baseline rate and the verdict on a target ratio."""
    rate = rows / seconds
    line = f"  {label:<58} {rate:>11,.0f} rows/s  ({rows:,} rows in {seconds:6.2f} s)"
    if baseline:
        ratio = rate / baseline
        line += f"  = {ratio:.2f}x of raw"
        if target is not None:
            line += f" (target >= {target:g}x: {'met' if ratio >= target else 'MISSED'})"
    return line
