"""Real servers on 127.0.0.1 for the checker tests: HTTP (200/500/slow/wrong content/
redirect), HTTPS with a self-signed certificate expiring in 5 days, a TCP listener, a closed
port, a black hole that accepts and never answers, and a small DNS server."""

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "RecordingHttpServer"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _answer(self, code: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(
            {"method": self.command, "path": parts.path, "headers": dict(self.headers), "body": body.decode()}
        )
        if parts.path == "/ok":
            self._answer(200, b'{"status": "healthy"}')
        elif parts.path == "/error":
            self._answer(500, b"internal failure: database unreachable")
        elif parts.path == "/slow":
            with self.server.lock:
                self.server.in_flight += 1
                self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
            try:
                time.sleep(float(query.get("ms", ["300"])[0]) / 1000)
            finally:
                with self.server.lock:
                    self.server.in_flight -= 1
            self._answer(200, b"healthy but slow")
        elif parts.path == "/wrong":
            self._answer(200, b"maintenance mode")
        elif parts.path == "/redirect":
            self._answer(302, b"", {"Location": "/ok"})
        elif parts.path == "/echo":
            echoed = {"method": self.command, "headers": dict(self.headers), "body": body.decode()}
            self._answer(200, json.dumps(echoed).encode())
        else:
            self._answer(404, b"not found")

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle


class RecordingHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, address, context: ssl.SSLContext | None = None):
        self.requests: list[dict] = []
        self.context = context
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        super().__init__(address, _Handler)

    def get_request(self):
        sock, address = super().get_request()
        if self.context is not None:
            # The handshake happens in the handler's thread, so one slow client stalls no other.
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    @property
    def base_url(self) -> str:
        scheme = "https" if self.context else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"


def _serve(server) -> Iterator:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def http_server() -> Iterator[RecordingHttpServer]:
    yield from _serve(RecordingHttpServer(("127.0.0.1", 0)))


@dataclass(frozen=True)
class SelfSigned:
    cert_file: Path
    key_file: Path
    not_after: dt.datetime


def make_self_signed(directory: Path, *, days: float, names: tuple[str, ...] = ("localhost",)) -> SelfSigned:
    """A self-signed certificate for `names` and 127.0.0.1, valid from a day ago for `days` days."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days)
    alt_names = [x509.DNSName(name) for name in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return SelfSigned(cert_file, key_file, not_after)


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory) -> SelfSigned:
    return make_self_signed(tmp_path_factory.mktemp("tls"), days=5)


@pytest.fixture(scope="session")
def https_server(self_signed) -> Iterator[RecordingHttpServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(self_signed.cert_file, self_signed.key_file)
    yield from _serve(RecordingHttpServer(("127.0.0.1", 0), context))


@pytest.fixture
def tcp_listener() -> Iterator[tuple[str, int]]:
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield "127.0.0.1", server.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on (bound once to find it free, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class BlackHole:
    """Accepts every connection and never sends a byte back."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.port = self.server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self.accepted:
            conn.close()
        self.server.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


class TinyDnsServer:
    """A UDP DNS server on 127.0.0.1 answering from a fixed zone (dnspython builds the replies)."""

    def __init__(self, zone: dict[tuple[str, str], list[str]]):
        import dns.message
        import dns.rcode
        import dns.rrset

        self._dns = dns
        self.zone = zone
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        dns = self._dns
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            rtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rtype))
            reply = dns.message.make_response(query)
            answers = self.zone.get((name, rtype))
            if answers:
                reply.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", rtype, answers))
            elif not any(key[0] == name for key in self.zone):
                reply.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dns_server() -> Iterator[TinyDnsServer]:
    server = TinyDnsServer(
        {
            ("www.fleet.test", "CNAME"): ["edge.fleet.test."],
            ("fleet.test", "MX"): ["10 mail.fleet.test."],
            ("edge.fleet.test", "A"): ["192.0.2.10", "192.0.2.11"],
        }
    )
    yield server
    server.close()
