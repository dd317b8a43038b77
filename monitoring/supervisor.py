"""Runs a set of child processes as one unit: each in its own process group, watched for
an unexpected exit, and stopped together (terminate, then kill after a timeout) so that
nothing is left behind, not even the grandchildren of a Celery worker's pool."""

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger("runmonitor")

# The settings' scheduler (monitoring.leader:LeaderScheduler): several beats, one sends.
BEAT_SCHEDULER = "monitoring.leader:LeaderScheduler"


class SupervisorError(Exception):
    pass


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: tuple[str, ...]
    pass_fds: tuple[int, ...] = ()  # listening sockets the child inherits


@dataclass(frozen=True)
class ExitedProcess:
    name: str
    pid: int
    returncode: int


def web_process(
    *, host: str, port: int, extra_ports: Sequence[int] = (), application: str, name: str = "web"
) -> ProcessSpec:
    """Daphne serving `application` (HTTP and websockets) on host:port and on each extra port."""
    argv = [sys.executable, "-m", "daphne", "-b", host, "-p", str(port)]
    interface = host.replace(":", r"\:")  # Twisted endpoint strings escape colons (IPv6)
    for extra in extra_ports:
        argv += ["-e", f"tcp:port={extra}:interface={interface}"]
    return ProcessSpec(name, (*argv, application))


def shared_socket_web_process(*, sockets: Sequence[socket.socket], application: str, name: str) -> ProcessSpec:
    """Daphne serving `application` on listening sockets opened by the supervisor and shared
    by every web process (Twisted adopts an inherited descriptor), so several processes
    accept on one port and the kernel spreads the connections, as gunicorn's workers do."""
    argv = [sys.executable, "-m", "daphne"]
    for listening in sockets:
        argv += ["-e", f"fd:fileno={listening.fileno()}"]
    return ProcessSpec(name, (*argv, application), pass_fds=tuple(listening.fileno() for listening in sockets))


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port (IPv4) for web processes to share."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET, backlog=1024)
    except OSError as exc:
        raise SupervisorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def worker_process(
    *, celery_app: str, log_level: str, concurrency: int, node_name: str, name: str = "worker"
) -> ProcessSpec:
    return ProcessSpec(
        name,
        (
            sys.executable,
            "-m",
            "celery",
            "-A",
            celery_app,
            "worker",
            "--loglevel",
            log_level,
            "--concurrency",
            str(concurrency),
            "--hostname",
            node_name,
        ),
    )


def beat_process(*, celery_app: str, log_level: str, name: str = "beat") -> ProcessSpec:
    return ProcessSpec(
        name,
        (
            sys.executable,
            "-m",
            "celery",
            "-A",
            celery_app,
            "beat",
            "--loglevel",
            log_level,
            "--scheduler",
            BEAT_SCHEDULER,
        ),
    )


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it if the supervisor dies, even by
    SIGKILL, since nothing else would stop a child living in its own session."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class Supervisor:
    """Start the processes of `specs`; report the first that exits; stop them all."""

    def __init__(self, specs: Sequence[ProcessSpec], *, env: Mapping[str, str], stop_timeout: float = 15.0) -> None:
        self.specs = list(specs)
        self.env = dict(env)
        self.stop_timeout = stop_timeout
        self.processes: dict[str, subprocess.Popen] = {}
        self.hurry = False  # a second Ctrl-C: kill without waiting

    def start(self) -> None:
        for spec in self.specs:
            process = subprocess.Popen(
                spec.argv,
                env=self.env,
                pass_fds=spec.pass_fds,
                start_new_session=True,  # its own process group: Ctrl-C reaches only us, we stop it
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            self.processes[spec.name] = process
            log.info("started %s (pid %s): %s", spec.name, process.pid, " ".join(spec.argv[1:]))

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    def first_exited(self) -> ExitedProcess | None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                return ExitedProcess(name, process.pid, process.returncode)
        return None

    def stop(self) -> None:
        """SIGTERM every process, wait up to `stop_timeout` for all of them together, then
        SIGKILL what is left of each process group."""
        running = {name: p for name, p in self.processes.items() if p.poll() is None}
        for name, process in running.items():
            log.info("stopping %s (pid %s)", name, process.pid)
            process.send_signal(signal.SIGTERM)  # a no-op for a process already reaped
        deadline = time.monotonic() + self.stop_timeout
        while any(p.poll() is None for p in running.values()) and time.monotonic() < deadline and not self.hurry:
            time.sleep(0.05)
        for name, process in self.processes.items():
            if process.poll() is None:
                if self.hurry:
                    log.warning("%s (pid %s): stop asked again, killing it", name, process.pid)
                else:
                    log.warning(
                        "%s (pid %s) did not stop within %.0fs: killing it", name, process.pid, self.stop_timeout
                    )
            # Kill the whole group even when its leader exited: a worker's pool children
            # outlive a leader that died abruptly.
            _kill_group(process.pid)
            process.wait()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is empty already
        os.killpg(pgid, signal.SIGKILL)


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (as Twisted does, with SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def local_address(host: str) -> str:
    """Where to reach a server bound to `host` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def wait_until_serving(
    host: str, port: int, *, timeout: float, supervisor: Supervisor, should_stop: Callable[[], bool]
) -> None:
    """Wait until a web process answers HTTP on host:port (a shared listening socket accepts
    connections before any process serves them); fail early when a child exits."""
    deadline = time.monotonic() + timeout
    address = local_address(host)
    while time.monotonic() < deadline:
        if should_stop():
            return
        exited = supervisor.first_exited()
        if exited:
            raise SupervisorError(
                f"{exited.name} (pid {exited.pid}) exited with code {exited.returncode} while starting"
            )
        if _answers_http(address, port):
            return
        time.sleep(0.1)
    raise SupervisorError(f"nothing answers HTTP on {address}:{port} after {timeout:.0f}s")


def _answers_http(address: str, port: int) -> bool:
    """Whether GET /healthz on address:port gets an HTTP status line back (any status: a
    process that answers 400 to an unlisted Host serves all the same)."""
    try:
        with socket.create_connection((address, port), timeout=1.0) as connection:
            connection.sendall(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return connection.recv(5) == b"HTTP/"
    except OSError:
        return False
