"""Real servers on 127.0.0.1 standing in for the services the senders talk to: an HTTP
receiver (Slack, PagerDuty, Twilio's API, webhooks) that records every request and answers
as scripted (2xx, 4xx, 429 with Retry-After, 5xx, or hang), and an SMTP server (aiosmtpd)
with STARTTLS or implicit TLS and AUTH LOGIN."""

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Reply:
    status: int = 200
    body: str | dict = ""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # hold the request until released (the client times out first)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: object  # the test clock's time when it arrived, else the wall clock's
    status: int = 0  # what the server answered (0: hung)

    def json(self):
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode())


class Receiver:
    """An HTTP server recording every request. Replies come from `script` (one per request,
    in order), then from `default`. `stop()`/`start()` take it down and up on the same port."""

    def __init__(self, clock=None) -> None:
        self.clock = clock
        self.requests: list[Recorded] = []
        self.script: deque[Reply] = deque()
        self.default = Reply(200, "ok")
        self.respond: Callable[[Recorded], Reply] | None = None
        self.release = threading.Event()
        self.arrived = threading.Event()
        self.lock = threading.Lock()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass

            def do_POST(self):
                receiver.handle(self)

            do_PUT = do_PATCH = do_GET = do_POST

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self.server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def close(self) -> None:
        self.release.set()
        self.stop()

    def now(self):
        return self.clock.now() if self.clock is not None else time.time()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        record = Recorded(
            handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()}, body, self.now()
        )
        with self.lock:
            self.requests.append(record)
            if self.respond is not None:
                reply = self.respond(record)
            else:
                reply = self.script.popleft() if self.script else self.default
        self.arrived.set()
        if reply.hang:
            self.release.wait(timeout=30)
            record.status = 0
            handler.close_connection = True  # hang up without an answer
            return
        record.status = reply.status
        payload = json.dumps(reply.body).encode() if isinstance(reply.body, dict) else reply.body.encode()
        try:
            handler.send_response(reply.status)
            headers = {"Content-Type": "application/json" if isinstance(reply.body, dict) else "text/plain"}
            headers.update(reply.headers)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            pass  # the client gave up (a timeout test)

    def answered(self, status: int = 200) -> list[Recorded]:
        return [r for r in self.requests if r.status == status]


# --- TLS and SMTP ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificate(directory: Path) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1 (its own CA, for `ca_file`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certificate(cert_file, key_file)


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None
    tls: bool


class MailHandler:
    """Records each message; `refuse_rcpt` answers RCPT TO with that reply (e.g. "550 ...")."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.refuse_rcpt: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.mails.append(
            Mail(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.original_content or envelope.content, policy=default_policy),
                login,
                session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
            )
        )
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpServer:
    """aiosmtpd on 127.0.0.1: STARTTLS required (or implicit TLS) and AUTH LOGIN with one
    user/password pair."""

    USER, PASSWORD = "alerts@example.com", "app-password"

    def __init__(self, certificate: Certificate, *, implicit_tls: bool = False) -> None:
        self.handler = MailHandler()
        context = certificate.server_context()
        options = {
            "authenticator": self._authenticate,
            "auth_required": True,
            "auth_require_tls": True,
        }
        self.port = free_port()
        if implicit_tls:
            # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is TLS from the start.
            options["auth_require_tls"] = False
            self.controller = Controller(
                self.handler, hostname="127.0.0.1", port=self.port, ssl_context=context, **options
            )
        else:
            self.controller = Controller(
                self.handler,
                hostname="127.0.0.1",
                port=self.port,
                tls_context=context,
                require_starttls=True,
                **options,
            )
        self.controller.start()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            mechanism in ("LOGIN", "PLAIN")
            and isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.USER
            and auth_data.password.decode() == self.PASSWORD
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    @property
    def mails(self) -> list[Mail]:
        return self.handler.mails

    def close(self) -> None:
        self.controller.stop()
