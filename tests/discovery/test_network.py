"""Network discovery: a scan of a port range on 127.0.0.1 (only ports this test opened)
proposes a service per open port, with an HTTP check where the port speaks HTTP; the scan
is rate- and concurrency-limited and never connects to a denied address."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from healthchecks.choices import CheckKind
from monitoring.choices import AuditAction, AuditSource, DiscoverySource, DiscoveryState, TargetKind
from monitoring.discovery.models import DiscoveredTarget
from monitoring.discovery.network import parse_hosts, parse_ports, scan
from monitoring.models import AuditLogEntry, MonitoringTarget
from tests.security.servers import RecordingServer


@contextmanager
def port_block(count: int) -> Iterator[list[socket.socket]]:
    """`count` consecutive loopback ports, bound (not yet listening) by this test."""
    for _ in range(50):
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        base = first.getsockname()[1]
        sockets = [first]
        try:
            for offset in range(1, count):
                sock = socket.socket()
                sock.bind(("127.0.0.1", base + offset))
                sockets.append(sock)
        except OSError:
            for sock in sockets:
                sock.close()
            continue
        try:
            yield sockets
        finally:
            for sock in sockets:
                sock.close()
        return
    raise RuntimeError("no block of free ports")


class Listener:
    """Accepts on a bound socket; `answer`: close at once (a silent TCP service) or hold
    each connection open without a word (a black hole). Counts connections."""

    def __init__(self, sock: socket.socket, *, hold: bool = False) -> None:
        self.sock, self.hold = sock, hold
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        sock.listen(64)
        sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        held = []
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with self.lock:
                self.accepted += 1
            if self.hold:
                held.append(conn)
            else:
                conn.close()
        for conn in held:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)


def serve_http(sock: socket.socket) -> RecordingServer:
    """An HTTP server (answering 404, as many front pages do) on the port `sock` reserved."""
    port = sock.getsockname()[1]
    sock.close()
    server = RecordingServer(port=port, status=404, body=b"not here")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.django_db
def test_scanning_a_port_range_on_localhost_proposes_and_approves_services(settings, users):
    settings.MONITORING_DISCOVERY_RATE = 0  # no pacing needed for three ports
    with port_block(3) as (http_sock, tcp_sock, closed_sock), ExitStack() as stack:
        http_port, tcp_port, closed_port = (s.getsockname()[1] for s in (http_sock, tcp_sock, closed_sock))
        server = serve_http(http_sock)
        stack.callback(server.shutdown)
        stack.callback(server.server_close)
        listener = Listener(tcp_sock)
        stack.callback(listener.close)
        # closed_sock stays bound without listening: a refused port.

        out = StringIO()
        call_command(
            "discover",
            "--source",
            "network",
            "--network",
            "127.0.0.1",
            "--ports",
            f"{http_port}-{closed_port}",
            "--format",
            "json",
            stdout=out,
            stderr=StringIO(),
        )
        listed = {row["name"]: row for row in json.loads(out.getvalue())}
        assert set(listed) == {f"127.0.0.1:{http_port} (http)", f"127.0.0.1:{tcp_port} (tcp)"}
        assert listed[f"127.0.0.1:{http_port} (http)"]["endpoint"] == f"http://127.0.0.1:{http_port}/"
        assert all(row["state"] == DiscoveryState.PENDING for row in listed.values())
        assert server.paths == ["/"]  # asked once whether it speaks HTTP
        assert not MonitoringTarget.objects.exists()

        call_command(
            "discover",
            "--source",
            "network",
            "--network",
            "127.0.0.1",
            "--ports",
            f"{http_port}-{closed_port}",
            "--approve",
            "--user",
            "admin",
            stdout=StringIO(),
            stderr=StringIO(),
        )
    http_target = MonitoringTarget.objects.get(slug=f"net-127-0-0-1-{http_port}")
    assert http_target.kind == TargetKind.SERVICE
    check = http_target.health_checks.get()
    assert (check.kind, check.config) == (
        CheckKind.HTTP,
        {"url": f"http://127.0.0.1:{http_port}/", "expected_status": "100-499"},
    )
    tcp_check = MonitoringTarget.objects.get(slug=f"net-127-0-0-1-{tcp_port}").health_checks.get()
    assert (tcp_check.kind, tcp_check.target.endpoint) == (CheckKind.TCP, f"127.0.0.1:{tcp_port}")
    approvals = AuditLogEntry.objects.filter(action=AuditAction.APPROVE)
    assert {(e.source, e.actor_name) for e in approvals} == {(AuditSource.CLI, "admin")}
    assert approvals.count() == 2
    assert DiscoveredTarget.objects.filter(source=DiscoverySource.NETWORK, state=DiscoveryState.APPROVED).count() == 2


def test_scan_paces_connection_attempts_at_the_rate():
    with port_block(6) as sockets:
        ports = [s.getsockname()[1] for s in sockets]  # bound, not listening: refused at once
        started = time.perf_counter()
        result = scan(["127.0.0.1"], ports, concurrency=10, rate=20, timeout=1)
        elapsed = time.perf_counter() - started
    assert (result.attempted, result.open_ports) == (6, ())
    assert elapsed >= 5 / 20 * 0.9  # six attempts 50 ms apart


def test_scan_keeps_at_most_concurrency_probes_in_flight():
    with port_block(4) as sockets:
        listeners = [Listener(sock, hold=True) for sock in sockets]  # accept and never answer
        ports = [s.getsockname()[1] for s in sockets]
        try:
            started = time.perf_counter()
            serial = scan(["127.0.0.1"], ports, concurrency=1, rate=0, timeout=0.3)
            serial_seconds = time.perf_counter() - started
            started = time.perf_counter()
            scan(["127.0.0.1"], ports, concurrency=4, rate=0, timeout=0.3)
            parallel_seconds = time.perf_counter() - started
        finally:
            for listener in listeners:
                listener.close()
    assert len(serial.open_ports) == 4 and all(p.scheme == "" for p in serial.open_ports)
    # Each probe waits out the plain HTTP and the TLS question (2 x 0.3 s): one at a time
    # that is at least 2.4 s; four at once about a quarter of it.
    assert serial_seconds >= 4 * 0.6 * 0.9
    assert parallel_seconds < serial_seconds / 2


def test_scan_never_connects_to_a_denied_address(settings):
    settings.MONITORING_OUTBOUND_DENY = ["127.0.0.1/32"]
    with port_block(1) as (sock,):
        listener = Listener(sock)
        try:
            result = scan(["127.0.0.1"], [sock.getsockname()[1]], concurrency=1, rate=0, timeout=0.5)
        finally:
            listener.close()
    assert (result.attempted, result.denied, result.open_ports, listener.accepted) == (0, 1, (), 0)


@pytest.mark.parametrize(
    ("specs", "hosts"),
    [
        (["127.0.0.1"], ["127.0.0.1"]),
        (["10.0.0.0/30"], ["10.0.0.1", "10.0.0.2"]),
        (["10.0.0.4-10.0.0.6", "10.0.0.5"], ["10.0.0.4", "10.0.0.5", "10.0.0.6"]),
        (["10.0.0.8/31"], ["10.0.0.8", "10.0.0.9"]),
    ],
)
def test_host_ranges(specs, hosts):
    assert parse_hosts(specs) == hosts


@pytest.mark.parametrize("bad", ["10.0.0.0/8", "10.0.0.9-10.0.0.1", "not-a-host", "10.0.0.1-::1"])
def test_bad_or_huge_host_ranges_are_refused(bad):
    with pytest.raises(ImproperlyConfigured):
        parse_hosts([bad])


def test_port_ranges():
    assert parse_ports(["80", "8000-8002", "80"]) == [80, 8000, 8001, 8002]
    for bad in ("0", "65536", "90-80", "http"):
        with pytest.raises(ImproperlyConfigured):
            parse_ports([bad])
