"""The outbound policy beyond HTTP: the email sender's SMTP connections and the TCP, TLS, DNS
and ping checks are refused before connecting to a denied address (the local server receives
nothing), the refusal is the notification's permanent failure or the check's result, and
everything else still connects."""

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from healthchecks.checkers import CheckSpec, RunOptions, run_checks
from healthchecks.choices import CheckKind, HealthStatus
from healthchecks.models import HealthCheck, HealthCheckResult
from healthchecks.services import run_checks_now
from notifications import outbox
from notifications.choices import ChannelKind, NotificationEvent, NotificationStatus
from notifications.models import Notification, NotificationChannel
from notifications.senders import ChannelInfo, Message, SendError, sender_for
from tests.healthchecks.conftest import TinyDnsServer
from tests.notifications.helpers import T0, FakeClock, fire
from tests.notifications.servers import SmtpServer, make_certificate

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
REFUSED = "outbound connection to 127.0.0.1 refused: 127.0.0.1/32 is in MONITORING_OUTBOUND_DENY"


class CountingListener:
    """A TCP port on 127.0.0.1 that counts the connections it accepts (TLS-wrapped when given
    a context) and closes them."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.context = context
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def settled(self, expected: int, timeout: float = 5.0) -> int:
        """The count once `expected` connections were accepted or `timeout` passed: a client
        returns as soon as the kernel completed its connection, before this thread's accept."""
        deadline = time.monotonic() + timeout
        while self.accepted < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.accepted

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            if self.context is not None:
                try:
                    conn.settimeout(2)
                    conn = self.context.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    pass
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@contextmanager
def listener(context: ssl.SSLContext | None = None) -> Iterator[CountingListener]:
    server = CountingListener(context)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"))


def check(kind: str, **config) -> CheckSpec:
    return CheckSpec(id=1, kind=kind, timeout=3, config=config)


def run_one(spec: CheckSpec):
    return run_checks([spec], NOW, RunOptions(ping_method="auto"))[0]


# --- SMTP ----------------------------------------------------------------------------------------


def send_email(port: int, *, host: str = "127.0.0.1", **settings) -> str:
    channel = ChannelInfo(
        id=1,
        key="mail",
        name="Mail",
        kind=ChannelKind.EMAIL,
        settings={
            "smtp_server": host,
            "smtp_port": port,
            "from_email": "alerts@example.com",
            "recipients": ["ops@example.com"],
            **settings,
        },
    )
    message = Message(
        channel=channel, event=NotificationEvent.TEST, alerts=(), idempotency_key="k1", now=NOW, timeout=3
    )
    return sender_for(channel).send(message)


@pytest.mark.parametrize("tls", [{}, {"use_tls": True}, {"use_ssl": True}], ids=["plain", "starttls", "implicit-tls"])
def test_smtp_to_a_denied_address_is_refused_permanently_before_connecting(settings, tls: dict) -> None:
    settings.MONITORING_OUTBOUND_DENY = ["127.0.0.1/32"]
    with listener() as server:
        with pytest.raises(SendError) as refused:
            send_email(server.port, **tls)
        assert refused.value.permanent  # configuration, not a passing fault: no retries
        assert refused.value.message == REFUSED
        assert server.accepted == 0


def test_smtp_server_named_by_a_host_name_is_checked_on_every_address(settings) -> None:
    settings.MONITORING_OUTBOUND_DENY = ["127.0.0.0/8", "::1/128"]
    with listener() as server:
        with pytest.raises(SendError, match=r"^outbound connection to localhost \(.+\) refused: .+ is in MONITORING"):
            send_email(server.port, host="localhost")
        assert server.accepted == 0


def test_smtp_to_an_allowed_address_delivers_with_starttls(settings, certificate) -> None:
    settings.MONITORING_OUTBOUND_DENY = ["169.254.169.254/32"]
    settings.MONITORING_OUTBOUND_ALLOW = ["127.0.0.0/8"]
    server = SmtpServer(certificate)
    try:
        send_email(
            server.port,
            host="localhost",  # TLS verifies the name, though the connection goes to a checked address
            use_tls=True,
            username=SmtpServer.USER,
            password=SmtpServer.PASSWORD,
            ca_file=str(certificate.cert_file),
        )
        assert [mail.rcpt_tos for mail in server.mails] == [["ops@example.com"]]
    finally:
        server.close()


def test_smtp_outside_the_allow_list_is_refused(settings) -> None:
    settings.MONITORING_OUTBOUND_DENY = []
    settings.MONITORING_OUTBOUND_ALLOW = ["10.0.0.0/8"]
    with listener() as server:
        with pytest.raises(SendError, match="refused: not in MONITORING_OUTBOUND_ALLOW") as refused:
            send_email(server.port)
        assert refused.value.permanent and server.accepted == 0


@pytest.mark.django_db
def test_a_refused_email_is_the_notifications_permanent_failure(settings) -> None:
    from alerts.models import AlertRule

    settings.MONITORING_OUTBOUND_DENY = ["127.0.0.1/32"]
    with listener() as server:
        channel = NotificationChannel.objects.create(
            name="Mail",
            key="mail",
            kind=ChannelKind.EMAIL,
            config={"smtp_server": "127.0.0.1", "smtp_port": server.port, "from_email": "a@example.com",
                    "recipients": ["ops@example.com"]},
        )  # fmt: skip
        rule = AlertRule.objects.create(name="CPU", key="cpu", metric="cpu", comparison=">", threshold=1)
        rule.channels.set([channel])
        fire(rule, T0)
        outbox.sweep_outbox(clock=FakeClock())
        assert server.accepted == 0
    row = Notification.objects.get()
    assert (row.status, row.permanent_failure, row.attempts) == (NotificationStatus.FAILED, True, 1)
    assert row.last_error == REFUSED
    channel.refresh_from_db()
    assert channel.last_error == REFUSED and channel.failing_since is not None


# --- TCP and TLS checks ------------------------------------------------------------------------------


def test_tcp_check_of_a_denied_address_fails_with_the_refusal_and_connects_nowhere(settings) -> None:
    with listener() as server:
        settings.MONITORING_OUTBOUND_DENY = ["127.0.0.1/32"]
        outcome = run_one(check(CheckKind.TCP, host="127.0.0.1", port=server.port))
        assert outcome.status == HealthStatus.CRITICAL and outcome.message == REFUSED
        assert outcome.details == {"error": "OutboundDenied"}
        assert server.accepted == 0

        settings.MONITORING_OUTBOUND_DENY = []
        outcome = run_one(check(CheckKind.TCP, host="127.0.0.1", port=server.port))
        assert outcome.status == HealthStatus.HEALTHY, outcome.message
        assert outcome.details["address"] == "127.0.0.1"
        assert server.settled(1) == 1


def test_tcp_check_of_a_name_tries_its_checked_addresses_in_turn(settings) -> None:
    """`localhost` may come first as ::1, where nothing listens: the check still reaches the
    IPv4 listener, connecting only to addresses the policy allowed."""
    settings.MONITORING_OUTBOUND_DENY = []
    with listener() as server:
        outcome = run_one(check(CheckKind.TCP, host="localhost", port=server.port))
        assert outcome.status == HealthStatus.HEALTHY, outcome.message
        assert server.settled(1) == 1
        settings.MONITORING_OUTBOUND_DENY = ["127.0.0.0/8"]
        outcome = run_one(check(CheckKind.TCP, host="localhost", port=server.port))
        assert outcome.status == HealthStatus.CRITICAL
        assert outcome.message.startswith("outbound connection to localhost (") and "127.0.0.0/8" in outcome.message
        assert server.settled(1) == 1


@pytest.mark.django_db
def test_a_refused_check_is_recorded_as_its_failed_result(settings) -> None:
    settings.MONITORING_OUTBOUND_DENY = ["127.0.0.1/32"]
    with listener() as server:
        row = HealthCheck.objects.create(
            name="Broker port", key="broker", kind=CheckKind.TCP, config={"host": "127.0.0.1", "port": server.port}
        )
        run_checks_now(check_ids=[row.pk])
        assert server.accepted == 0
    result = HealthCheckResult.objects.get(health_check=row)
    assert result.status == HealthStatus.CRITICAL and result.message == REFUSED


def test_tls_check_of_a_denied_address_is_refused_before_the_handshake(settings, certificate) -> None:
    config = {"server_name": "localhost", "ca_file": str(certificate.cert_file), "critical_days": 1, "warning_days": 1}
    with listener(certificate.server_context()) as server:
        settings.MONITORING_OUTBOUND_DENY = ["127.0.0.1/32"]
        outcome = run_one(check(CheckKind.TLS_CERTIFICATE, host="127.0.0.1", port=server.port, **config))
        assert outcome.status == HealthStatus.CRITICAL and outcome.message == REFUSED
        assert server.accepted == 0

        settings.MONITORING_OUTBOUND_DENY = []
        outcome = run_one(check(CheckKind.TLS_CERTIFICATE, host="127.0.0.1", port=server.port, **config))
        assert outcome.status == HealthStatus.HEALTHY, outcome.message
        assert outcome.details["subject"] == "CN=localhost"  # verified against server_name, not the address
        assert server.settled(1) == 1


# --- DNS and ping checks -----------------------------------------------------------------------------


def test_dns_check_against_a_denied_nameserver_sends_no_query(settings) -> None:
    server = TinyDnsServer({("edge.fleet.test", "A"): ["192.0.2.10"]})
    try:
        spec = check(CheckKind.DNS, name="edge.fleet.test", nameserver="127.0.0.1", port=server.port)
        settings.MONITORING_OUTBOUND_DENY = ["127.0.0.1/32"]
        outcome = run_one(spec)
        assert outcome.status == HealthStatus.CRITICAL and outcome.message == REFUSED
        assert server.queries == []

        settings.MONITORING_OUTBOUND_DENY = []
        outcome = run_one(spec)
        assert outcome.status == HealthStatus.HEALTHY, outcome.message
        assert outcome.details["answers"] == ["192.0.2.10"]
        assert server.queries == [("edge.fleet.test", "A")]
    finally:
        server.close()


def test_dns_check_of_a_name_in_a_denied_network_is_a_query_not_a_connection(settings) -> None:
    """The policy applies to the server the check talks to; the answer is data."""
    server = TinyDnsServer({("metadata.fleet.test", "A"): ["169.254.169.254"]})
    try:
        settings.MONITORING_OUTBOUND_DENY = ["169.254.169.254/32"]
        outcome = run_one(check(CheckKind.DNS, name="metadata.fleet.test", nameserver="127.0.0.1", port=server.port))
        assert outcome.status == HealthStatus.HEALTHY, outcome.message
        assert outcome.details["answers"] == ["169.254.169.254"]
    finally:
        server.close()


def test_ping_of_a_denied_address_sends_nothing(settings) -> None:
    settings.MONITORING_OUTBOUND_DENY = ["127.0.0.1/32"]
    outcome = run_one(check(CheckKind.PING, host="127.0.0.1", packet_count=1))
    assert outcome.status == HealthStatus.CRITICAL and outcome.message == REFUSED
    assert "sent" not in outcome.details  # refused before any echo request

    settings.MONITORING_OUTBOUND_DENY = ["127.0.0.0/8", "::1/128"]
    outcome = run_one(check(CheckKind.PING, host="localhost", packet_count=1))
    assert outcome.status == HealthStatus.CRITICAL
    assert outcome.message.startswith("outbound connection to localhost (")


def test_ping_of_an_allowed_address_is_sent(settings) -> None:
    settings.MONITORING_OUTBOUND_DENY = ["169.254.169.254/32"]
    outcome = run_one(check(CheckKind.PING, host="127.0.0.1", packet_count=2))
    assert outcome.status == HealthStatus.HEALTHY, outcome.message
    assert outcome.details["sent"] == 2 and outcome.details["received"] == 2


def test_checkers_run_without_django_settings_keep_the_default_deny_list(tmp_path) -> None:
    """A script that runs the checkers alone (no settings module) still has the embedded
    default policy: the cloud metadata address is refused."""
    script = (
        "from healthchecks.checkers import CheckSpec, run_checks;"
        "[o] = run_checks([CheckSpec(id=1, kind='tcp', timeout=3, config={'host': '169.254.169.254', 'port': 80})]);"
        "print(o.message)"
    )
    root = Path(__file__).resolve().parents[2]
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(root), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == (
        "outbound connection to 169.254.169.254 refused: 169.254.169.254/32 is in MONITORING_OUTBOUND_DENY"
    )
