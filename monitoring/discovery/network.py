"""Network discovery: TCP connect to every (host, port) of the configured ranges, at most
`concurrency` at once and `rate` connection attempts a second, then ask each open port
whether it speaks HTTP (plain, else over TLS). Pure: ranges in, open ports out, no ORM."""

import asyncio
import contextlib
import ipaddress
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from .. import outbound
from ..choices import DiscoverySource, TargetKind
from .services import Finding

# A /16 of hosts; beyond that a scan is a mistake in the setting, not an inventory.
MAX_SCAN_HOSTS = 65_536
HTTP_PROBE = b"HEAD / HTTP/1.0\r\nHost: %b\r\nUser-Agent: iot-monitoring-discovery/1.0\r\nConnection: close\r\n\r\n"
READ_BYTES = 256


@dataclass(frozen=True)
class OpenPort:
    host: str
    port: int
    scheme: str = ""  # "http" or "https" when the port answered HTTP
    status: int | None = None  # the HTTP status of HEAD /

    def finding(self) -> Finding:
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        endpoint = f"{self.scheme}://{address}/" if self.scheme else address
        details = {"protocol": self.scheme or "tcp"}
        if self.status is not None:
            details["http_status"] = self.status
        return Finding(
            source=DiscoverySource.NETWORK,
            identity=f"network:{self.host}:{self.port}",
            kind=TargetKind.SERVICE,
            name=f"{address} ({self.scheme or 'tcp'})",
            endpoint=endpoint,
            details=details,
        )


@dataclass(frozen=True)
class ScanResult:
    open_ports: tuple[OpenPort, ...]
    attempted: int
    denied: int  # addresses the outbound policy refused: never connected to
    seconds: float


def parse_hosts(specs: Iterable[str]) -> list[str]:
    """Addresses from CIDR networks ("10.0.0.0/24": its hosts), single addresses and
    ranges ("10.0.0.5-10.0.0.20"). Refuses more than MAX_SCAN_HOSTS addresses."""
    hosts: dict[str, None] = {}
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        try:
            if "-" in spec:
                first_text, _, last_text = spec.partition("-")
                first, last = ipaddress.ip_address(first_text.strip()), ipaddress.ip_address(last_text.strip())
                if first.version != last.version or int(last) < int(first):
                    raise ValueError(spec)
                if int(last) - int(first) + 1 > MAX_SCAN_HOSTS:
                    raise ImproperlyConfigured(f"{spec!r} has more than {MAX_SCAN_HOSTS} addresses")
                addresses: Iterable = (ipaddress.ip_address(n) for n in range(int(first), int(last) + 1))
            else:
                network = ipaddress.ip_network(spec, strict=False)
                if network.num_addresses > MAX_SCAN_HOSTS:
                    raise ImproperlyConfigured(f"{spec!r} has more than {MAX_SCAN_HOSTS} addresses")
                addresses = network.hosts() if network.num_addresses > 2 else iter(network)
        except ValueError:
            raise ImproperlyConfigured(
                f"MONITORING_DISCOVERY_NETWORKS: {spec!r} is not a network, an address or a range a-b"
            ) from None
        for address in addresses:
            hosts[str(address)] = None
            if len(hosts) > MAX_SCAN_HOSTS:
                raise ImproperlyConfigured(f"MONITORING_DISCOVERY_NETWORKS covers more than {MAX_SCAN_HOSTS} addresses")
    return list(hosts)


def parse_ports(specs: Iterable[str]) -> list[int]:
    """Ports from "80", "8000-8100"; each 1-65535."""
    ports: dict[int, None] = {}
    for spec in specs:
        spec = str(spec).strip()
        if not spec:
            continue
        low_text, _, high_text = spec.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if high_text else low
        except ValueError:
            raise ImproperlyConfigured(f"MONITORING_DISCOVERY_PORTS: {spec!r} is not a port or a range a-b") from None
        if not 1 <= low <= high <= 65535:
            raise ImproperlyConfigured(f"MONITORING_DISCOVERY_PORTS: {spec!r} is outside 1-65535")
        ports.update(dict.fromkeys(range(low, high + 1)))
    return list(ports)


class _RateLimiter:
    """Spaces connection attempts 1/rate seconds apart (a rate of 0 or less: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            loop = asyncio.get_running_loop()
            delay = self.next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.next_at = max(self.next_at, loop.time()) + self.interval


async def _speaks_http(host: str, port: int, timeout: float, tls: bool) -> int | None:
    """The status of `HEAD /` on a fresh connection, or None when the answer is not HTTP."""
    context = None
    if tls:
        # Discovery asks what the port speaks; trusting the certificate is the check's job.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            writer.write(HTTP_PROBE % host.encode())
            await writer.drain()
            head = await reader.read(READ_BYTES)
    except (OSError, TimeoutError, ssl.SSLError, EOFError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1)
    if not head.startswith(b"HTTP/"):
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


async def _probe(host: str, port: int, timeout: float) -> OpenPort | None:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return None
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1)
    for scheme, tls in (("http", False), ("https", True)):
        status = await _speaks_http(host, port, timeout, tls)
        if status is not None:
            return OpenPort(host, port, scheme, status)
    return OpenPort(host, port)


async def scan_async(
    hosts: Sequence[str], ports: Sequence[int], *, concurrency: int, rate: float, timeout: float
) -> ScanResult:
    started = time.perf_counter()
    slots = asyncio.Semaphore(max(1, concurrency))
    limiter = _RateLimiter(rate)
    denied = 0
    allowed_hosts = []
    for host in hosts:
        try:
            outbound.check_address(host)
        except outbound.OutboundDenied:
            denied += len(ports)
            continue
        allowed_hosts.append(host)

    async def one(host: str, port: int) -> OpenPort | None:
        async with slots:
            await limiter.wait()
            return await _probe(host, port, timeout)

    # Started in batches: a /16 times ten ports is 650,000 coroutines otherwise.
    pairs = [(host, port) for host in allowed_hosts for port in ports]
    found: list[OpenPort] = []
    batch = max(concurrency * 4, 256)
    for start in range(0, len(pairs), batch):
        results = await asyncio.gather(*(one(host, port) for host, port in pairs[start : start + batch]))
        found.extend(result for result in results if result is not None)
    return ScanResult(tuple(found), len(pairs), denied, time.perf_counter() - started)


def scan(hosts: Sequence[str], ports: Sequence[int], *, concurrency: int, rate: float, timeout: float) -> ScanResult:
    """Scan on a fresh event loop (from a Celery worker or a command)."""
    return asyncio.run(scan_async(hosts, ports, concurrency=concurrency, rate=rate, timeout=timeout))
