"""The checkers: one probe per kind of health check, run concurrently on one asyncio loop.
The base `Checker.run` times the probe, enforces the timeout and turns any error into a
failed result with a readable message. Every connection a probe makes obeys the outbound
policy (monitoring.outbound). Pure: check specs in, outcomes out, no ORM."""

import asyncio
import contextlib
import ipaddress
import os
import random
import re
import secrets
import signal
import socket
import ssl
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import aiohttp
from cryptography import x509

from monitoring import outbound

from .choices import CheckKind, HealthStatus, PingKind
from .validation import command_argv, parse_expected_status, split_host_port

DEFAULT_EXPECTED_STATUS = [(200, 299)]
HTTP_BODY_LIMIT = 1024 * 1024  # bytes of a response body read for content matching
EXCERPT_CHARS = 300
MAX_REDIRECTS = 10
USER_AGENT = "iot-monitoring-healthcheck/1.0"
PING_INTERVAL_S = 0.2  # the shortest interval iputils allows an unprivileged user


@dataclass(frozen=True)
class CheckSpec:
    """What a probe needs to know about one check."""

    id: int
    kind: str
    timeout: float
    config: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""
    endpoint: str = ""  # the target's endpoint: the url or host when the config has none
    # Heartbeat state (push-based checks judge it instead of probing).
    created_at: datetime | None = None
    period: float = 60.0
    grace: float = 60.0
    last_ping_at: datetime | None = None
    last_ping_kind: str = ""
    last_start_at: datetime | None = None


@dataclass(frozen=True)
class ProbeResult:
    status: HealthStatus
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    response_time: float | None = None  # when the probe times a narrower part than the whole run


@dataclass(frozen=True)
class CheckOutcome:
    check_id: int
    status: HealthStatus
    message: str
    response_time: float | None
    details: Mapping[str, Any]
    checked_at: datetime


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 500  # probes in flight at once
    spread: float = 0.0  # seconds over which the starts of a batch are spread (jitter)
    output_limit: int = 64 * 1024  # bytes kept of a custom command's stdout and of its stderr
    ping_method: str = "auto"  # auto | socket | command


class CheckError(Exception):
    """A probe's failure whose message is already meant for people."""

    def __init__(self, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.details = dict(details or {})


def describe_error(exc: BaseException) -> str:
    """A readable one-line reason for an exception raised by a probe."""
    if isinstance(exc, outbound.OutboundDenied):
        return str(exc)
    # aiohttp's connector errors also subclass the ssl and OS errors they wrap: unwrap first.
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return describe_error(exc.certificate_error)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return describe_error(exc.os_error)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return f"too many redirects (more than {MAX_REDIRECTS})"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc}"
    if isinstance(exc, aiohttp.ClientError):
        cause = _specific_cause(exc)
        if cause is not None and cause is not exc:
            return describe_error(cause)
        return f"HTTP error: {exc}" if str(exc) else f"HTTP error: {exc.__class__.__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _specific_cause(exc: BaseException) -> BaseException | None:
    """The first error in `exc`'s chain that says what went wrong at the socket (HTTP
    libraries wrap "connection refused" in two or three generic layers)."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (ssl.SSLError, socket.gaierror)) or (
            isinstance(current, OSError) and current.errno is not None
        ):
            return current
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        pending.extend(getattr(current, "exceptions", ()))
    return None


class ProbeSession:
    """Resources shared by the probes of one run: an HTTP client session per TLS setting
    (and the TLS contexts, which are costly to build: the CA store is read once)."""

    def __init__(self, options: RunOptions):
        self.options = options
        self._sessions: dict[tuple[bool, str | None], aiohttp.ClientSession] = {}

    def http_session(self, *, verify: bool, ca_file: str | None) -> aiohttp.ClientSession:
        key = (verify, ca_file if verify else None)
        session = self._sessions.get(key)
        if session is None:
            tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if verify else False
            # force_close: each check opens its own connection, as a client of the service
            # would; a pooled keep-alive connection would hide a server that accepts no new ones.
            # The outbound policy checks every address resolved and connected to, redirects included.
            connector = aiohttp.TCPConnector(
                limit=0, force_close=True, ssl=tls, happy_eyeballs_delay=0.25, **outbound.aiohttp_connector_options()
            )
            session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=None),  # the Checker base owns the timeout
                trust_env=False,
            )
            self._sessions[key] = session
        return session

    async def aclose(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


class Checker:
    """Runs one kind of probe. Subclasses implement only `probe`."""

    kind: ClassVar[str]

    def __init__(self, session: ProbeSession):
        self.session = session

    async def run(self, check: CheckSpec, now: datetime) -> CheckOutcome:
        """Probe `check` within its timeout; any failure becomes a critical outcome with its reason."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(check.timeout):
                result = await self.probe(check, now)
        except TimeoutError:
            result = ProbeResult(HealthStatus.CRITICAL, f"timed out after {check.timeout:g} s", {"error": "timeout"})
        except CheckError as exc:
            result = ProbeResult(HealthStatus.CRITICAL, str(exc), {"error": "check_failed", **exc.details})
        except Exception as exc:  # a probe's failure is the check's result, never the run's crash
            result = ProbeResult(HealthStatus.CRITICAL, describe_error(exc), {"error": exc.__class__.__name__})
        elapsed = time.perf_counter() - started
        return CheckOutcome(
            check_id=check.id,
            status=result.status,
            message=result.message[:1000],
            response_time=result.response_time if result.response_time is not None else elapsed,
            details=dict(result.details),
            checked_at=now,
        )

    async def probe(self, check: CheckSpec, now: datetime) -> ProbeResult:
        raise NotImplementedError


def _host_and_port(check: CheckSpec, default_port: int | None = None) -> tuple[str, int]:
    host, port = split_host_port(check.endpoint) if check.endpoint else ("", None)
    host = check.config.get("host") or host
    port = check.config.get("port") or port or default_port
    if not host:
        raise CheckError("no host configured (in the check's config or its target's endpoint)")
    if not port:
        raise CheckError("no port configured (in the check's config or its target's endpoint)")
    return host.strip("[]"), int(port)


def _excerpt(text: str) -> str:
    text = text.strip()
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


class HttpChecker(Checker):
    kind = CheckKind.HTTP

    async def probe(self, check: CheckSpec, now: datetime) -> ProbeResult:
        config = check.config
        url = config.get("url") or check.endpoint
        if not url:
            raise CheckError("no url configured (in the check's config or its target's endpoint)")
        method = str(config.get("method", "GET")).upper()
        body = config.get("body")
        session = self.session.http_session(verify=config.get("verify_tls", True), ca_file=config.get("ca_file"))
        started = time.perf_counter()
        async with session.request(
            method,
            url,
            headers={k: str(v) for k, v in (config.get("headers") or {}).items()},
            data=body.encode() if isinstance(body, str) else None,
            json=body if isinstance(body, (dict, list)) else None,
            allow_redirects=config.get("follow_redirects", True),
            max_redirects=MAX_REDIRECTS,
        ) as response:
            raw = bytearray()
            while len(raw) < HTTP_BODY_LIMIT:
                chunk = await response.content.read(HTTP_BODY_LIMIT - len(raw))
                if not chunk:
                    break
                raw += chunk
        elapsed = time.perf_counter() - started
        text = raw.decode(response.charset or "utf-8", errors="replace")
        status = response.status
        details: dict[str, Any] = {"status_code": status, "url": str(response.url), "redirects": len(response.history)}
        expected = parse_expected_status(config["expected_status"]) if "expected_status" in config else None
        ranges = expected or DEFAULT_EXPECTED_STATUS
        failure = None
        if not any(low <= status <= high for low, high in ranges):
            wanted = config.get("expected_status", "2xx")
            failure = f"HTTP {status} {response.reason or ''}".rstrip() + f" (expected {wanted})"
        elif config.get("expected_content") and config["expected_content"] not in text:
            failure = f"HTTP {status}, but the response does not contain {config['expected_content']!r}"
        elif config.get("expected_regex") and not re.search(config["expected_regex"], text):
            failure = f"HTTP {status}, but the response does not match /{config['expected_regex']}/"
        if failure:
            details["body_excerpt"] = _excerpt(text)
            return ProbeResult(HealthStatus.CRITICAL, failure, details, elapsed)
        limit = config.get("max_response_time")
        if limit is not None and elapsed > limit:
            message = f"HTTP {status} in {elapsed:.3f} s, slower than {limit:g} s"
            return ProbeResult(HealthStatus.WARNING, message, details, elapsed)
        return ProbeResult(HealthStatus.HEALTHY, f"HTTP {status} in {elapsed:.3f} s", details, elapsed)


class TcpChecker(Checker):
    kind = CheckKind.TCP

    async def probe(self, check: CheckSpec, now: datetime) -> ProbeResult:
        host, port = _host_and_port(check)
        started = time.perf_counter()
        # Resolved and checked against the outbound policy, then connected to a checked address.
        _, writer = await outbound.open_connection(host, port)
        elapsed = time.perf_counter() - started
        peer = writer.get_extra_info("peername")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return ProbeResult(
            HealthStatus.HEALTHY,
            f"connected to {host}:{port} in {elapsed * 1000:.1f} ms",
            {"address": peer[0] if peer else None, "port": port},
            elapsed,
        )


# --- ping -----------------------------------------------------------------------------------


class IcmpUnavailableError(Exception):
    """This process may open neither an unprivileged ICMP socket nor a raw one."""


@dataclass(frozen=True)
class PingStats:
    sent: int
    received: int
    rtts: tuple[float, ...]  # seconds
    method: str

    @property
    def loss_ratio(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def open_icmp_socket(family: int) -> tuple[socket.socket, str]:
    """An ICMP echo socket: the unprivileged datagram kind where net.ipv4.ping_group_range
    admits our group, else a raw one where we hold CAP_NET_RAW (root)."""
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), "icmp-socket"
    except PermissionError:
        pass
    try:
        return socket.socket(family, socket.SOCK_RAW, proto), "icmp-raw"
    except PermissionError as exc:
        raise IcmpUnavailableError("no permission for an ICMP socket") from exc


async def _resolve(host: str) -> tuple[int, str]:
    try:
        address = ipaddress.ip_address(host)
        return (socket.AF_INET if address.version == 4 else socket.AF_INET6), str(address)
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_RAW)
    family, *_, sockaddr = infos[0]
    return family, sockaddr[0]


async def ping_with_socket(host: str, count: int, budget: float) -> PingStats:
    """Send `count` echo requests and collect the replies within `budget` seconds."""
    loop = asyncio.get_running_loop()
    family, address = await _resolve(host)
    sock, method = open_icmp_socket(family)
    sock.setblocking(False)
    v4 = family == socket.AF_INET
    request_type, reply_type = (8, 0) if v4 else (128, 129)
    token = secrets.token_bytes(8)
    ident = secrets.randbits(16)
    wait_each = max(0.1, budget / count - 0.01)
    rtts: list[float] = []
    try:
        for seq in range(1, count + 1):
            payload = token + struct.pack("!H", seq) + bytes(46)
            header = struct.pack("!BBHHH", request_type, 0, 0, ident, seq)
            checksum = _checksum(header + payload) if v4 else 0  # the kernel sums ICMPv6
            packet = struct.pack("!BBHHH", request_type, 0, checksum, ident, seq) + payload
            sent_at = time.perf_counter()
            await loop.sock_sendto(sock, packet, (address, 0))
            deadline = sent_at + wait_each
            while (remaining := deadline - time.perf_counter()) > 0:
                try:
                    async with asyncio.timeout(remaining):
                        data, _ = await loop.sock_recvfrom(sock, 2048)
                except TimeoutError:
                    break
                if v4 and method == "icmp-raw":
                    data = data[(data[0] & 0x0F) * 4 :]  # a raw IPv4 socket hands over the IP header too
                # Match on our random payload: datagram sockets rewrite the id, raw ones see every reply.
                if len(data) >= 18 and data[0] == reply_type and data[8:18] == payload[:10]:
                    rtts.append(time.perf_counter() - sent_at)
                    break
            pause = PING_INTERVAL_S - (time.perf_counter() - sent_at)
            if seq < count and pause > 0:
                await asyncio.sleep(pause)
    finally:
        sock.close()
    return PingStats(sent=count, received=len(rtts), rtts=tuple(rtts), method=method)


_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_RTT = re.compile(r"= [\d.]+/([\d.]+)/[\d.]+")
_PING_REPLY_TIME = re.compile(r"time[=<]([\d.]+) ms")


async def ping_with_command(host: str, count: int, budget: float) -> PingStats:
    """The system `ping` (iputils), for when this process may open no ICMP socket."""
    wait_each = max(1.0, budget / count)
    process = await asyncio.create_subprocess_exec(
        "ping",
        "-n",
        "-c",
        str(count),
        "-i",
        str(PING_INTERVAL_S),
        "-W",
        f"{wait_each:.1f}",
        "-w",
        str(max(1, int(budget))),
        host,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
    )
    try:
        out, err = await process.communicate()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    text = out.decode(errors="replace")
    summary = _PING_SUMMARY.search(text)
    if summary is None:
        reason = err.decode(errors="replace").strip() or text.strip() or f"exit code {process.returncode}"
        raise CheckError(f"ping failed: {reason.splitlines()[-1]}")
    rtts = tuple(float(ms) / 1000 for ms in _PING_REPLY_TIME.findall(text))
    return PingStats(sent=int(summary[1]), received=int(summary[2]), rtts=rtts, method="ping-command")


class PingChecker(Checker):
    kind = CheckKind.PING

    async def probe(self, check: CheckSpec, now: datetime) -> ProbeResult:
        host = check.config.get("host") or (split_host_port(check.endpoint)[0] if check.endpoint else "")
        if not host:
            raise CheckError("no host configured (in the check's config or its target's endpoint)")
        count = int(check.config.get("packet_count", 3))
        # Keep a margin under the timeout so heavy loss ends as a loss figure, not a timeout.
        budget = max(0.5, check.timeout - 0.3)
        method = self.session.options.ping_method
        # Every address of the name must pass the outbound policy; the echo requests (and the
        # system `ping`) then go to the address checked, never to a second DNS answer.
        address = (await outbound.resolve_checked_async(host, 0))[0]
        stats = None
        if method in ("auto", "socket"):
            try:
                stats = await ping_with_socket(address, count, budget)
            except IcmpUnavailableError:
                if method == "socket":
                    raise CheckError("ICMP sockets are not permitted for this process") from None
        if stats is None:
            stats = await ping_with_command(address, count, budget)
        details: dict[str, Any] = {
            "host": host,
            "method": stats.method,
            "sent": stats.sent,
            "received": stats.received,
            "packet_loss_ratio": round(stats.loss_ratio, 4),
        }
        if stats.rtts:
            details |= {
                "rtt_min_ms": round(min(stats.rtts) * 1000, 3),
                "rtt_avg_ms": round(sum(stats.rtts) / len(stats.rtts) * 1000, 3),
                "rtt_max_ms": round(max(stats.rtts) * 1000, 3),
            }
        average = sum(stats.rtts) / len(stats.rtts) if stats.rtts else None
        if stats.received == 0:
            return ProbeResult(HealthStatus.CRITICAL, f"no reply from {host} ({stats.sent} sent)", details, None)
        summary = f"{stats.received}/{stats.sent} replies from {host}, rtt avg {details['rtt_avg_ms']} ms"
        if stats.received < stats.sent:
            return ProbeResult(HealthStatus.WARNING, f"{stats.loss_ratio:.0%} packet loss: {summary}", details, average)
        return ProbeResult(HealthStatus.HEALTHY, summary, details, average)


# --- custom command ---------------------------------------------------------------------------


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Read a stream to its end, keeping the first `limit` bytes (the rest is drained so the
    command never blocks on a full pipe)."""
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(65536):
        room = limit - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > max(room, 0):
            truncated = True
    return bytes(kept), truncated


def _command_env() -> dict[str, str]:
    # A command sees no secret of ours (DATABASE_URL, SECRET_KEY...): only what a plugin needs.
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "HOME")
    return {name: os.environ[name] for name in keep if name in os.environ}


class CustomChecker(Checker):
    """A command in the Nagios plugin convention: exit 0 healthy, 1 warning, 2 and others
    critical; the first line of stdout (before any `|` performance data) is the message."""

    kind = CheckKind.CUSTOM

    async def probe(self, check: CheckSpec, now: datetime) -> ProbeResult:
        argv = command_argv(check.config.get("command"))
        if not argv:
            raise CheckError("no command configured")
        limit = self.session.options.output_limit
        started = time.perf_counter()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, so a timeout kills its children too
                env=_command_env(),
            )
        except FileNotFoundError:
            raise CheckError(f"custom command {argv[0]!r} does not exist") from None
        except PermissionError:
            raise CheckError(f"custom command {argv[0]!r} is not executable") from None
        readers = [
            asyncio.ensure_future(_read_capped(process.stdout, limit)),
            asyncio.ensure_future(_read_capped(process.stderr, limit)),
        ]
        try:
            code = await _exit_code(process)
            elapsed = time.perf_counter() - started
            # A child the command left behind may hold the pipes open: it goes with the group.
            _kill_group(process.pid)
            async with asyncio.timeout(1.0):
                (out, out_cut), (err, err_cut) = await asyncio.gather(*readers)
        finally:
            if process.returncode is None:
                _kill_group(process.pid)
                await _exit_code(process)
            # Once the group is dead the pipes reach their end: finish reading so the
            # transport closes on this loop, not when garbage collected after it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 1.0)
                await asyncio.wait_for(process.wait(), 1.0)
            for reader in readers:
                reader.cancel()
        stdout = out.decode(errors="replace")
        stderr = err.decode(errors="replace")
        first_line = next((line for line in stdout.splitlines() if line.strip()), "")
        message, _, perfdata = first_line.partition("|")
        message = message.strip() or next((ln.strip() for ln in stderr.splitlines() if ln.strip()), "")
        details: dict[str, Any] = {
            "exit_code": code,
            "stdout": _excerpt(stdout) if len(stdout) > EXCERPT_CHARS else stdout.strip(),
            "stderr": _excerpt(stderr),
            "output_truncated": out_cut or err_cut,
        }
        if perfdata.strip():
            details["perfdata"] = perfdata.strip()
        if code == 0:
            status = HealthStatus.HEALTHY
        elif code == 1:
            status = HealthStatus.WARNING
        else:
            status = HealthStatus.CRITICAL
        if code < 0:
            message = message or f"killed by signal {-code}"
        return ProbeResult(status, message or f"exit code {code}", details, elapsed)


async def _exit_code(process: asyncio.subprocess.Process) -> int:
    """The exit code as soon as the process exits. `Process.wait()` also waits for its pipes
    to close, which a background child that inherited them can put off indefinitely."""
    pause = 0.005
    while process.returncode is None:
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)
    return process.returncode


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# --- heartbeat ----------------------------------------------------------------------------------


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class HeartbeatChecker(Checker):
    """Push-based: judges the pings a device sent instead of probing it."""

    kind = CheckKind.HEARTBEAT

    async def probe(self, check: CheckSpec, now: datetime) -> ProbeResult:
        return judge_heartbeat(check, now)

    async def run(self, check: CheckSpec, now: datetime) -> CheckOutcome:
        outcome = await super().run(check, now)
        # Nothing was timed: a heartbeat has no response time.
        return CheckOutcome(outcome.check_id, outcome.status, outcome.message, None, outcome.details, now)


def judge_heartbeat(check: CheckSpec, now: datetime) -> ProbeResult:
    """Decide a heartbeat check's state at `now` from its last pings."""
    allowed = timedelta(seconds=check.period + check.grace)
    last, started = check.last_ping_at, check.last_start_at
    details: dict[str, Any] = {
        "last_ping_at": last.isoformat() if last else None,
        "period": check.period,
        "grace": check.grace,
    }
    # A device that reported its own failure is down until it reports success again.
    if last is not None and check.last_ping_kind == PingKind.FAIL:
        return ProbeResult(HealthStatus.CRITICAL, f"the device reported a failure {_ago(now - last)} ago", details)
    # A job that announced its start must report success within the grace time.
    if started is not None and (last is None or started > last) and now - started > timedelta(seconds=check.grace):
        details["last_start_at"] = started.isoformat()
        return ProbeResult(
            HealthStatus.CRITICAL,
            f"started {_ago(now - started)} ago and no success ping within the {check.grace:g} s grace time",
            details,
        )
    if last is None:
        since = now - (check.created_at or now)
        if since <= allowed:
            return ProbeResult(HealthStatus.UNKNOWN, "waiting for the first ping", details)
        message = f"no ping received since the check was created {_ago(since)} ago"
        return ProbeResult(HealthStatus.CRITICAL, message, details)
    age = now - last
    if age > allowed:
        return ProbeResult(
            HealthStatus.CRITICAL,
            f"late: last ping {_ago(age)} ago (expected every {check.period:g} s, {check.grace:g} s grace)",
            details,
        )
    return ProbeResult(HealthStatus.HEALTHY, f"last ping {_ago(age)} ago", details)


# --- TLS certificate ---------------------------------------------------------------------------


def _certificate_facts(der: bytes, now: datetime) -> dict[str, Any]:
    certificate = x509.load_der_x509_certificate(der)
    not_after = certificate.not_valid_after_utc
    facts: dict[str, Any] = {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "not_after": not_after.isoformat(),
        "expiry_days": round((not_after - now).total_seconds() / 86400, 3),
    }
    with contextlib.suppress(x509.ExtensionNotFound):
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        facts["san"] = [str(name.value) for name in names]
    return facts


async def _peer_certificate(host: str, port: int, context: ssl.SSLContext, server_name: str | None) -> bytes:
    _, writer = await outbound.open_connection(host, port, ssl=context, server_hostname=server_name)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return der


class TlsCertificateChecker(Checker):
    kind = CheckKind.TLS_CERTIFICATE

    async def probe(self, check: CheckSpec, now: datetime) -> ProbeResult:
        config = check.config
        host, port = _host_and_port(check, default_port=443)
        server_name = config.get("server_name") or host
        warning_days = config.get("warning_days", 30)
        critical_days = config.get("critical_days", 7)
        if config.get("verify", True):
            context = ssl.create_default_context(cafile=config.get("ca_file"))
        else:
            context = _unverified_context()
        started = time.perf_counter()
        try:
            der = await _peer_certificate(host, port, context, server_name)
        except ssl.SSLCertVerificationError as exc:
            # Report the expiry all the same: the certificate is usually what needs fixing.
            details: dict[str, Any] = {"host": host, "port": port, "verify_error": exc.verify_message}
            with contextlib.suppress(OSError, ssl.SSLError, ValueError):
                der = await _peer_certificate(host, port, _unverified_context(), server_name)
                details |= _certificate_facts(der, now)
            return ProbeResult(HealthStatus.CRITICAL, describe_error(exc), details)
        elapsed = time.perf_counter() - started
        facts = {"host": host, "port": port, **_certificate_facts(der, now)}
        days = facts["expiry_days"]
        if days < 0:
            return ProbeResult(HealthStatus.CRITICAL, f"certificate expired {-days:.1f} days ago", facts, elapsed)
        if days <= critical_days:
            message = f"certificate expires in {days:.1f} days (critical under {critical_days:g})"
            return ProbeResult(HealthStatus.CRITICAL, message, facts, elapsed)
        if days <= warning_days:
            message = f"certificate expires in {days:.1f} days (warning under {warning_days:g})"
            return ProbeResult(HealthStatus.WARNING, message, facts, elapsed)
        return ProbeResult(HealthStatus.HEALTHY, f"certificate valid for {days:.1f} more days", facts, elapsed)


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --- DNS --------------------------------------------------------------------------------------


def _normalise_answer(value: str) -> str:
    return value.rstrip(".").lower()


class DnsChecker(Checker):
    """A and AAAA through the system resolver (as the platform's services resolve names,
    /etc/hosts included); other types, or any type against a chosen nameserver, by dnspython."""

    kind = CheckKind.DNS

    async def probe(self, check: CheckSpec, now: datetime) -> ProbeResult:
        config = check.config
        name = config.get("name") or (split_host_port(check.endpoint)[0] if check.endpoint else "")
        if not name:
            raise CheckError("no name configured (in the check's config or its target's endpoint)")
        record_type = str(config.get("record_type", "A")).upper()
        started = time.perf_counter()
        if config.get("nameserver") is None and record_type in ("A", "AAAA"):
            answers, source = await self._system_answers(name, record_type), "system resolver"
        else:
            answers, source = await self._dns_answers(check, name, record_type), config.get("nameserver") or "dnspython"
        elapsed = time.perf_counter() - started
        details: dict[str, Any] = {"name": name, "record_type": record_type, "answers": answers, "resolver": source}
        expected = config.get("expected")
        if expected:
            wanted = [expected] if isinstance(expected, str) else list(expected)
            have = {_normalise_answer(a) for a in answers}
            missing = [w for w in wanted if _normalise_answer(w) not in have]
            details["expected"] = wanted
            if missing:
                message = f"{name} {record_type} answers {', '.join(answers)}; expected {', '.join(missing)} missing"
                return ProbeResult(HealthStatus.CRITICAL, message, details, elapsed)
        return ProbeResult(HealthStatus.HEALTHY, f"{name} {record_type} → {', '.join(answers)}", details, elapsed)

    async def _system_answers(self, name: str, record_type: str) -> list[str]:
        family = socket.AF_INET if record_type == "A" else socket.AF_INET6
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(name, None, family=family, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise CheckError(f"cannot resolve {name!r} ({record_type}): {exc.strerror}") from None
        return sorted({info[4][0] for info in infos})

    async def _dns_answers(self, check: CheckSpec, name: str, record_type: str) -> list[str]:
        import dns.asyncresolver
        import dns.exception
        import dns.resolver

        nameserver = check.config.get("nameserver")
        resolver = dns.asyncresolver.Resolver(configure=nameserver is None)
        if nameserver is not None:
            # The policy applies to the server the check talks to (the name queried is data,
            # not a destination); the system's own resolvers are the machine's configuration.
            outbound.check_address(str(nameserver))
            resolver.nameservers = [nameserver]
            resolver.port = int(check.config.get("port", 53))
        resolver.lifetime = check.timeout
        try:
            answer = await resolver.resolve(name, record_type, search=False)
        except dns.resolver.NXDOMAIN:
            raise CheckError(f"{name} does not exist (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            raise CheckError(f"{name} has no {record_type} record") from None
        except dns.resolver.NoNameservers as exc:
            raise CheckError(f"no nameserver answered for {name}: {exc}") from None
        except dns.exception.Timeout:
            raise CheckError(f"DNS query for {name} {record_type} timed out") from None
        return sorted(rdata.to_text() for rdata in answer)


CHECKERS: dict[str, type[Checker]] = {
    checker.kind: checker
    for checker in (
        HttpChecker,
        TcpChecker,
        PingChecker,
        CustomChecker,
        HeartbeatChecker,
        TlsCertificateChecker,
        DnsChecker,
    )
}


async def run_checks_async(
    checks: Sequence[CheckSpec], now: datetime, options: RunOptions, rng: random.Random | None = None
) -> list[CheckOutcome]:
    """Run `checks` concurrently, at most `options.concurrency` at once, their starts spread
    at random over `options.spread` seconds so a fleet does not start in the same second."""
    loop = asyncio.get_running_loop()
    session = ProbeSession(options)
    checkers = {kind: cls(session) for kind, cls in CHECKERS.items()}
    limit = asyncio.Semaphore(max(1, options.concurrency))
    rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
    origin = loop.time()

    async def one(check: CheckSpec) -> CheckOutcome:
        if options.spread > 0 and len(checks) > 1:
            await asyncio.sleep(rng.uniform(0, options.spread))
        async with limit:
            started = now + timedelta(seconds=loop.time() - origin)
            checker = checkers.get(check.kind)
            if checker is None:
                message = f"unknown check type {check.kind!r}"
                return CheckOutcome(check.id, HealthStatus.UNKNOWN, message, None, {}, started)
            return await checker.run(check, started)

    try:
        return list(await asyncio.gather(*(one(check) for check in checks)))
    finally:
        await session.aclose()


def run_checks(
    checks: Sequence[CheckSpec], now: datetime | None = None, options: RunOptions | None = None
) -> list[CheckOutcome]:
    """Run `checks` on a fresh event loop (from a Celery worker, a command or a request
    thread) and return one outcome per check, in order."""
    if not checks:
        return []
    return asyncio.run(run_checks_async(checks, now or datetime.now(UTC), options or RunOptions()))
