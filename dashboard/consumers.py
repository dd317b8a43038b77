"""The dashboard's live socket: checks the Origin and the login on connect, joins the
groups the page asks for, and relays what dashboard.publish sends them."""

from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from monitoring.roles import user_role

from .publish import GROUP_ALERTS, GROUP_EVENTS, GROUP_HEALTH, GROUP_METRICS

LIVE_GROUPS = frozenset({GROUP_ALERTS, GROUP_HEALTH, GROUP_METRICS, GROUP_EVENTS})
# Close codes (4000-4999 are the application's): the page stops reconnecting on these.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


def _header(scope: dict, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return ""


def origin_allowed(scope: dict) -> bool:
    """Same origin only: the Origin's host and port must be the Host the socket was opened
    on, or an origin listed in CSRF_TRUSTED_ORIGINS (a proxy that rewrites Host). A socket
    without an Origin (not from a browser page) is refused too: it is cross-site
    websocket hijacking that this stops, and pages always send one."""
    origin = _header(scope, b"origin")
    if not origin:
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    host = _header(scope, b"host")
    default_port = "443" if parts.scheme == "https" else "80"

    def normal(netloc: str) -> str:
        return netloc.lower() if ":" in netloc.rsplit("]", 1)[-1] else f"{netloc.lower()}:{default_port}"

    return bool(host) and normal(parts.netloc) == normal(host)


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/live/?groups=alerts,health`: one socket per page."""

    groups_joined: tuple[str, ...] = ()

    async def connect(self) -> None:
        if not origin_allowed(self.scope):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if await database_sync_to_async(user_role)(user) is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        wanted = {name for raw in query.get("groups", []) for name in raw.split(",")}
        self.groups_joined = tuple(sorted(wanted & LIVE_GROUPS))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"event": "hello", "payload": {"groups": list(self.groups_joined)}})

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: object, **kwargs: object) -> None:
        # The page only sends keep-alive pings; anything else is ignored.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"event": "pong", "payload": {}})

    async def live_event(self, message: dict) -> None:
        await self.send_json({"event": message["event"], "payload": message["payload"]})
