"""`manage.py runmonitor`: the whole system on one machine, as `make run` starts it.

Starts the embedded Redis (when REDIS_URL is unset), migrates, bootstraps a first start,
syncs the periodic schedule, then runs Daphne (--web processes sharing one port), Celery
workers (--workers) and Celery beat (--beat: one leads, the others stand by) as supervised
children until Ctrl-C or SIGTERM, and stops every one of them."""

import argparse
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from types import FrameType

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring.bootstrap import ADMIN_USERNAME, BootstrapError, BootstrapResult, bootstrap
from monitoring.embedded_redis import EmbeddedRedisError, start_embedded_redis, stop_embedded_redis
from monitoring.logconfig import resolve_log_level
from monitoring.models import GlobalSettings
from monitoring.schedule import sync_periodic_tasks
from monitoring.supervisor import (
    ExitedProcess,
    ProcessSpec,
    Supervisor,
    SupervisorError,
    beat_process,
    listening_socket,
    port_is_free,
    shared_socket_web_process,
    wait_until_serving,
    web_process,
    worker_process,
)

log = logging.getLogger("runmonitor")

REPEAT_SIGNAL_SECONDS = 1.0


def tcp_port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


class Command(BaseCommand):
    help = "Run the web server (Daphne), Celery workers and Celery beat as one supervised group."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="0.0.0.0", help="Interface to serve on (default 0.0.0.0).")  # noqa: S104
        parser.add_argument(
            "--port", type=tcp_port, default=settings.MONITORING_PORT, help="HTTP port (default MONITORING_PORT)."
        )
        parser.add_argument(
            "--prometheus-port",
            type=tcp_port,
            default=None,
            help="Second port for /metrics (default: the global settings' prometheus_port; 0 turns it off).",
        )
        parser.add_argument(
            "--web",
            type=positive_int,
            default=1,
            help="Daphne processes, all accepting on --port (default 1; above 1 needs an IPv4 --host).",
        )
        parser.add_argument("--workers", type=positive_int, default=1, help="Celery worker processes (default 1).")
        parser.add_argument(
            "--concurrency",
            type=positive_int,
            default=min(4, os.cpu_count() or 1),
            help="Pool processes of each Celery worker (default: CPUs, at most 4).",
        )
        parser.add_argument(
            "--beat",
            type=positive_int,
            default=1,
            help="Celery beat processes (default 1): one holds the leader lock and sends, the others stand by.",
        )
        parser.add_argument("--no-migrate", action="store_true", help="Do not apply migrations first.")
        parser.add_argument(
            "--no-bootstrap", action="store_true", help="Skip the first-start demo import and admin user."
        )
        parser.add_argument(
            "--stop-timeout", type=float, default=15.0, help="Seconds to wait for a clean stop before killing."
        )
        parser.add_argument(
            "--startup-timeout", type=float, default=60.0, help="Seconds to wait for the web server to listen."
        )

    def handle(self, *args, **options) -> None:
        stop = threading.Event()
        supervisor: Supervisor | None = None
        first_signal_at: list[float] = []
        self.sockets: list[socket.socket] = []  # shared listening sockets of --web above 1

        def on_signal(signum: int, frame: FrameType | None) -> None:
            now = time.monotonic()
            # Asked again a second later (a second Ctrl-C): do not wait for a clean stop. A
            # repeat within the second is one request delivered twice, as `timeout` or a
            # process manager signalling both the group and the process do.
            if not first_signal_at:
                first_signal_at.append(now)
            elif now - first_signal_at[0] >= REPEAT_SIGNAL_SECONDS and supervisor is not None:
                supervisor.hurry = True
            stop.set()

        if options["web"] > 1 and ":" in options["host"]:
            raise CommandError(f"--web {options['web']} needs an IPv4 --host (got {options['host']})")
        if not port_is_free(options["host"], options["port"]):
            raise CommandError(
                f"port {options['port']} on {options['host']} is in use: stop what runs there or pass --port"
            )
        previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
        redis_process = None
        exited: ExitedProcess | None = None
        try:
            if settings.EMBEDDED_REDIS:
                redis_process = start_embedded_redis(settings.EMBEDDED_REDIS_SOCKET)
            started = self.prepare(options)
            if not stop.is_set():  # a signal during the preparation stops before any child starts
                extra_ports = self.extra_ports(options["host"], options["port"], started.metrics_port)
                supervisor = self.make_supervisor(options, started.log_level, extra_ports)
                try:
                    supervisor.start()
                finally:
                    self.close_sockets()  # the web processes hold their own copies now
                wait_until_serving(
                    options["host"],
                    options["port"],
                    timeout=options["startup_timeout"],
                    supervisor=supervisor,
                    should_stop=stop.is_set,
                )
                if not stop.is_set():
                    self.print_banner(options, started, supervisor, extra_ports)
                exited = self.supervise(supervisor, redis_process, stop)
        except (EmbeddedRedisError, BootstrapError, SupervisorError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            self.close_sockets()
            if stop.is_set():
                log.info("stop requested: stopping every process")
            if supervisor is not None:
                supervisor.stop()
            stop_embedded_redis(redis_process)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if exited is not None:
            raise CommandError(
                f"{exited.name} (pid {exited.pid}) exited unexpectedly with code {exited.returncode}; "
                "stopped everything else"
            )
        self.stdout.write("Stopped.")

    def prepare(self, options: dict) -> "Started":
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        result = BootstrapResult(first_start=False)
        if not options["no_bootstrap"]:
            result = bootstrap(
                demo_config=settings.MONITORING_DEMO_CONFIG, admin_password=settings.MONITORING_ADMIN_PASSWORD
            )
        sync_periodic_tasks()
        global_settings = GlobalSettings.objects.filter(pk=1).first() or GlobalSettings()
        try:
            level, source = resolve_log_level(settings.LOG_LEVEL, global_settings.log_level)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        logging.getLogger().setLevel(level)
        log.info("log level %s (from %s)", level, source)
        prometheus_port = options["prometheus_port"]
        if prometheus_port is None:
            prometheus_port = global_settings.prometheus_port or 0
        return Started(result, level, prometheus_port)

    def extra_ports(self, host: str, port: int, metrics_port: int) -> list[int]:
        """The prometheus port as a second endpoint of the web server, when set and free."""
        if not metrics_port or metrics_port == port:
            return []
        if not port_is_free(host, metrics_port):
            log.warning("prometheus port %s on %s is in use: /metrics is served on %s only", metrics_port, host, port)
            return []
        return [metrics_port]

    def make_supervisor(self, options: dict, log_level: str, extra_ports: list[int]) -> Supervisor:
        env = {"LOG_STREAM": "stdout", **os.environ, "LOG_LEVEL": log_level, "PYTHONUNBUFFERED": "1"}
        env["DJANGO_SETTINGS_MODULE"] = os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings")
        if options["prometheus_port"]:
            # The web processes route /api/v1/ to Prometheus' API by the port a request came
            # in on: tell them the port given here, not the global settings' one.
            env["MONITORING_PROMETHEUS_PORT"] = str(options["prometheus_port"])
        workers = [
            worker_process(
                celery_app="config",
                log_level=log_level,
                concurrency=options["concurrency"],
                node_name=f"runmonitor-{os.getpid()}{'' if n == 1 else f'-{n}'}@%h",
                name=numbered("worker", n, options["workers"]),
            )
            for n in range(1, options["workers"] + 1)
        ]
        beats = [
            beat_process(celery_app="config", log_level=log_level, name=numbered("beat", n, options["beat"]))
            for n in range(1, options["beat"] + 1)
        ]
        return Supervisor(
            [*self.web_processes(options, extra_ports), *workers, *beats],
            env=env,
            stop_timeout=options["stop_timeout"],
        )

    def close_sockets(self) -> None:
        for listening in self.sockets:
            listening.close()
        self.sockets = []

    def web_processes(self, options: dict, extra_ports: list[int]) -> list[ProcessSpec]:
        host, port, count = options["host"], options["port"], options["web"]
        application = "config.asgi:application"
        if count == 1:
            return [web_process(host=host, port=port, extra_ports=extra_ports, application=application)]
        # One listening socket per port, inherited by every web process; the supervisor's own
        # copies are closed once the children hold theirs (Supervisor.start).
        self.sockets = [listening_socket(host, p) for p in (port, *extra_ports)]
        return [
            shared_socket_web_process(sockets=self.sockets, application=application, name=f"web-{n}")
            for n in range(1, count + 1)
        ]

    def supervise(
        self, supervisor: Supervisor, redis_process: subprocess.Popen | None, stop: threading.Event
    ) -> ExitedProcess | None:
        """Wait for a stop request or the first unexpected exit."""
        while not stop.wait(0.25):
            exited = supervisor.first_exited()
            if exited is None and redis_process is not None and redis_process.poll() is not None:
                exited = ExitedProcess("embedded redis", redis_process.pid, redis_process.returncode)
            if exited is not None:
                log.error(
                    "%s (pid %s) exited unexpectedly with code %s: stopping everything",
                    exited.name,
                    exited.pid,
                    exited.returncode,
                )
                return exited
        return None

    def print_banner(self, options: dict, started: "Started", supervisor: Supervisor, extra_ports: list[int]) -> None:
        host = options["host"]
        shown_host = "localhost" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
        base = f"http://{shown_host}:{options['port']}"
        lines = [
            f"IoT Monitoring is running (supervisor pid {os.getpid()}; "
            + ", ".join(f"{name} pid {pid}" for name, pid in supervisor.pids().items())
            + ")",
            f"  Dashboard: {base}/",
            f"  Admin:     {base}/admin/",
            f"  API:       {base}/api/status  (header X-API-Key; docs at {base}/api/schema/swagger/)",
        ]
        for extra in extra_ports:
            lines.append(f"  Metrics:   http://{shown_host}:{extra}/metrics  (and {base}/metrics)")
        standby = f", {options['beat'] - 1} standing by" if options["beat"] > 1 else ""
        lines.append(
            f"  Processes: {options['web']} web on port {options['port']}, {options['workers']} worker(s) "
            f"of {options['concurrency']}, {options['beat']} beat (one leads{standby})"
        )
        result = started.bootstrap
        if result.admin_password:
            lines.append(f"  Login:     {ADMIN_USERNAME} / {result.admin_password}")
            lines.append("             (generated now and shown only this once: change it in the admin)")
        elif result.first_start:
            lines.append(f"  Login:     {ADMIN_USERNAME}, password from {result.password_source}")
        else:
            lines.append(f"  Login:     {ADMIN_USERNAME} (the password set on the first start)")
        lines.append("Press Ctrl-C to stop.")
        self.stdout.write("\n".join(lines))


def numbered(kind: str, n: int, count: int) -> str:
    """A child's name: `worker` when it is the only one of its kind, else `worker-2`."""
    return kind if count == 1 else f"{kind}-{n}"


@dataclass(frozen=True)
class Started:
    """What preparing the start found."""

    bootstrap: BootstrapResult
    log_level: str
    metrics_port: int  # 0: none
