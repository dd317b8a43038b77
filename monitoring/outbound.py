"""The outbound network policy: connections made on behalf of configuration (webhooks, HTTP
checks, scrapes, discovery, SMTP, TCP/TLS/DNS/ping checks) may not reach
MONITORING_OUTBOUND_DENY networks and, when MONITORING_OUTBOUND_ALLOW is set, only reach
those. It is enforced when the connection is made, on every address the host resolves to,
so a redirect or a DNS answer cannot route around it: httpx clients get a guarded network
backend, aiohttp a guarded resolver and socket factory, plain sockets `create_connection`
(blocking) and `open_connection` (asyncio), which connect to the very address checked."""

import asyncio
import errno
import ipaddress
import socket
from asyncio import staggered
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import anyio
import httpcore
import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundDenied(OSError):
    """A connection the outbound policy refuses. An OSError (EACCES), so HTTP libraries
    report it as the connection failure it is."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        super().__init__(errno.EACCES, self.message)

    @property
    def message(self) -> str:
        shown = self.address if self.host in ("", self.address) else f"{self.host} ({self.address})"
        return f"outbound connection to {shown} refused: {self.reason}"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class OutboundPolicy:
    deny: tuple[IPNetwork, ...] = ()
    allow: tuple[IPNetwork, ...] = ()

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` may not be connected to, or None when it may. Deny wins over allow."""
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
        for network in self.deny:
            if address.version == network.version and address in network:
                return f"{network} is in MONITORING_OUTBOUND_DENY"
        if self.allow and not any(address.version == n.version and address in n for n in self.allow):
            return "not in MONITORING_OUTBOUND_ALLOW"
        return None


def parse_networks(values: Iterable[str], *, setting: str) -> tuple[IPNetwork, ...]:
    """Networks from CIDR texts ("10.0.0.0/8", a single address); anything else fails
    loudly, naming the setting."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{setting}: {value!r} is not a network (use CIDR, e.g. 10.0.0.0/8)") from None
    return tuple(networks)


@lru_cache(maxsize=8)
def _build_policy(deny: tuple[str, ...], allow: tuple[str, ...]) -> OutboundPolicy:
    return OutboundPolicy(
        parse_networks(deny, setting="MONITORING_OUTBOUND_DENY"),
        parse_networks(allow, setting="MONITORING_OUTBOUND_ALLOW"),
    )


# The embedded default of MONITORING_OUTBOUND_DENY (config/settings.py): the cloud metadata addresses.
DEFAULT_DENY = ("169.254.169.254/32", "fd00:ec2::254/128")


def current_policy() -> OutboundPolicy:
    """The policy of the current settings (read per connection, so a changed setting applies).
    A process without Django settings (a script running the checkers alone) gets the
    embedded default rather than no policy at all."""
    if not settings.configured:
        return _build_policy(DEFAULT_DENY, ())
    return _build_policy(
        tuple(getattr(settings, "MONITORING_OUTBOUND_DENY", ()) or ()),
        tuple(getattr(settings, "MONITORING_OUTBOUND_ALLOW", ()) or ()),
    )


def check_address(address: str, *, host: str = "") -> None:
    """Raise OutboundDenied when the policy refuses a connection to `address` (an IP)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    reason = current_policy().refusal(ip)
    if reason is not None:
        raise OutboundDenied(host or address, str(ip), reason)


def check_addresses(host: str, addresses: Sequence[str]) -> None:
    """Every address `host` resolved to must be allowed: a name that also points into a
    denied network is refused as a whole, whichever address a client would try first."""
    for address in addresses:
        check_address(address, host=host)


def resolve_checked(host: str, port: int) -> list[str]:
    """The addresses of `host` (blocking getaddrinfo), each checked against the policy."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    check_addresses(host, addresses)
    return addresses


async def resolve_checked_async(host: str, port: int) -> list[str]:
    """resolve_checked for coroutines: the lookup runs in a worker thread."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    check_addresses(host, addresses)
    return addresses


# --- plain sockets: resolve, check, connect to the checked address ------------------------------


def create_connection(
    host: str, port: int, timeout: float | None = None, source_address: tuple[str, int] | None = None
) -> socket.socket:
    """socket.create_connection under the policy: `host` is resolved here, every address is
    checked (OutboundDenied, before any connection), and the connection goes to an address
    that was checked, the next one when it fails."""
    addresses = resolve_checked(host, port)
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout, source_address)
        except OSError as exc:
            error = exc
    raise error or OSError(f"no address for {host}")


HAPPY_EYEBALLS_DELAY_S = 0.25  # RFC 8305's suggestion: start the next address after this


async def _connect_socket(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:  # a failed attempt, or one cancelled because another won the race
        sock.close()
        raise
    return sock


async def open_connection(host: str, port: int, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio.open_connection under the policy, as create_connection: the checked addresses
    are tried as asyncio itself does for a name (happy eyeballs: the next one starts after
    HAPPY_EYEBALLS_DELAY_S), so an unreachable IPv6 address does not cost the whole timeout.
    With `ssl`, TLS still names and verifies `host` (server_hostname), not the address."""
    addresses = await resolve_checked_async(host, port)
    if kwargs.get("ssl"):
        kwargs.setdefault("server_hostname", host)
    # asyncio.staggered is what loop.create_connection races addresses with.
    attempts = [partial(_connect_socket, address, port) for address in addresses]
    sock, _, errors = await staggered.staggered_race(attempts, HAPPY_EYEBALLS_DELAY_S)
    if sock is None:
        raise next((e for e in reversed(errors) if e is not None), None) or OSError(f"no address for {host}")
    return await asyncio.open_connection(sock=sock, **kwargs)


# --- httpx: a network backend that resolves, checks and connects to the checked address ------


class _GuardedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy allows. The name is resolved here and the
    connection made to the very address checked, so a second DNS answer cannot differ;
    TLS still verifies the certificate against the URL's host name."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, **kwargs: Any) -> httpcore.NetworkStream:
        try:
            addresses = resolve_checked(host, port)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
        error: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout=timeout, **kwargs)
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"no address for {host}")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not an outbound destination")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _GuardedAsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve_checked_async(host, port)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, **kwargs)
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"no address for {host}")

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not an outbound destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def httpx_transport(**kwargs: Any) -> httpx.HTTPTransport:
    """An httpx transport whose every connection (redirects included) obeys the policy."""
    transport = httpx.HTTPTransport(**kwargs)
    # httpx offers no parameter for httpcore's network backend; the pool reads this
    # attribute for each new connection (tests/security/test_outbound.py pins it).
    transport._pool._network_backend = _GuardedBackend(transport._pool._network_backend)
    return transport


def httpx_async_transport(**kwargs: Any) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(**kwargs)
    transport._pool._network_backend = _GuardedAsyncBackend(transport._pool._network_backend)
    return transport


def httpx_client(*, limits: httpx.Limits | None = None, **kwargs: Any) -> httpx.Client:
    """An httpx.Client under the policy. Environment proxies are not used: through a proxy
    the destination would be out of the policy's sight."""
    transport = httpx_transport(limits=limits) if limits is not None else httpx_transport()
    return httpx.Client(transport=transport, trust_env=False, **kwargs)


def httpx_async_client(*, limits: httpx.Limits | None = None, **kwargs: Any) -> httpx.AsyncClient:
    transport = httpx_async_transport(limits=limits) if limits is not None else httpx_async_transport()
    return httpx.AsyncClient(transport=transport, trust_env=False, **kwargs)


# --- aiohttp: a resolver that checks names, a socket factory that checks every connect ---------


def aiohttp_connector_options() -> dict[str, Any]:
    """Keyword arguments for aiohttp.TCPConnector (call inside the running loop): names are
    checked when resolved, and every socket's address (IP literals too, which aiohttp
    does not resolve) when it is opened."""
    import aiohttp

    class GuardedResolver(aiohttp.abc.AbstractResolver):
        def __init__(self) -> None:
            self._inner = aiohttp.DefaultResolver()

        async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
            hosts = await self._inner.resolve(host, port, family)
            check_addresses(host, [entry["host"] for entry in hosts])
            return hosts

        async def close(self) -> None:
            await self._inner.close()

    return {"resolver": GuardedResolver(), "socket_factory": guarded_socket}


def guarded_socket(addr_info: tuple) -> socket.socket:
    """A socket for `addr_info` (getaddrinfo's tuple) once its address passes the policy."""
    family, type_, proto, _, address = addr_info
    check_address(str(address[0]))
    return socket.socket(family=family, type=type_, proto=proto)


def denial_in(exc: BaseException) -> OutboundDenied | None:
    """The OutboundDenied somewhere in `exc`'s chain (libraries wrap it), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OutboundDenied):
            return current
        pending.extend([current.__cause__, current.__context__, getattr(current, "os_error", None)])
    return None
