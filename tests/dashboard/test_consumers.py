"""The live socket: refused without a login or from a foreign Origin, and relays what
dashboard.publish sends to the groups the page joined."""

import functools

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from config.asgi import application
from dashboard import publish as publish_module
from dashboard.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, LiveConsumer, origin_allowed
from dashboard.publish import GROUP_ALERTS, publish, publish_metrics_changed

HOST = (b"host", b"testserver")


def run_async(test):
    """Run an async test body on an event loop of its own (no async pytest plugin needed)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return async_to_sync(test)(*args, **kwargs)

    return wrapper


SAME_ORIGIN = (b"origin", b"http://testserver")


def communicator(user, *, headers=(HOST, SAME_ORIGIN), groups: str = "alerts") -> WebsocketCommunicator:
    comm = WebsocketCommunicator(LiveConsumer.as_asgi(), f"/ws/live/?groups={groups}", headers=list(headers))
    comm.scope["user"] = user
    return comm


@pytest.mark.django_db(transaction=True)
@run_async
async def test_anonymous_socket_is_closed() -> None:
    connected, code = await communicator(AnonymousUser()).connect()
    assert not connected and code == CLOSE_UNAUTHENTICATED


@pytest.mark.django_db(transaction=True)
@run_async
async def test_foreign_origin_is_refused(users) -> None:
    comm = communicator(users["viewer"], headers=[HOST, (b"origin", b"http://evil.example")])
    connected, code = await comm.connect()
    assert not connected and code == CLOSE_FORBIDDEN


@pytest.mark.django_db(transaction=True)
@run_async
async def test_foreign_origin_is_refused_through_the_asgi_stack(users) -> None:
    # The whole application, as Daphne serves it: session auth middleware and all.
    comm = WebsocketCommunicator(
        application, "/ws/live/?groups=alerts", headers=[HOST, (b"origin", b"http://evil.example")]
    )
    connected, _ = await comm.connect()
    assert not connected


@pytest.mark.django_db(transaction=True)
@run_async
async def test_user_without_a_role_is_refused(users) -> None:
    connected, code = await communicator(users["norole"]).connect()
    assert not connected and code == CLOSE_FORBIDDEN


@pytest.mark.django_db(transaction=True)
@run_async
async def test_authenticated_socket_receives_published_events_of_its_groups(users) -> None:
    comm = communicator(users["viewer"], groups="alerts,nonsense")
    connected, _ = await comm.connect()
    assert connected
    hello = await comm.receive_json_from(timeout=5)
    assert hello == {"event": "hello", "payload": {"groups": ["alerts"]}}
    await sync_to_async(publish)(GROUP_ALERTS, "alert.transition", {"id": 7, "state": "active"})
    assert await comm.receive_json_from(timeout=5) == {
        "event": "alert.transition",
        "payload": {"id": 7, "state": "active"},
    }
    await sync_to_async(publish)("health", "health.state_changed", {"changes": []})
    assert await comm.receive_nothing(timeout=0.5)
    await comm.send_json_to({"type": "ping"})
    assert (await comm.receive_json_from(timeout=5))["event"] == "pong"
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
@run_async
async def test_metrics_changed_is_published_at_most_once_a_second_per_metric(users, monkeypatch) -> None:
    # Ingestion in other tests of this process has announced metrics at real times already.
    monkeypatch.setattr(publish_module, "_metrics_last_published", {})
    comm = communicator(users["viewer"], groups="metrics")
    assert (await comm.connect())[0]
    await comm.receive_json_from(timeout=5)
    assert await sync_to_async(publish_metrics_changed)(["cpu_usage_percent", "mem"], now=1000.0)
    assert not await sync_to_async(publish_metrics_changed)(["cpu_usage_percent"], now=1000.5)
    assert await sync_to_async(publish_metrics_changed)(["cpu_usage_percent"], now=1001.0)
    first = await comm.receive_json_from(timeout=5)
    second = await comm.receive_json_from(timeout=5)
    assert first == {"event": "metrics.changed", "payload": {"metrics": ["cpu_usage_percent", "mem"]}}
    assert second["payload"] == {"metrics": ["cpu_usage_percent"]}
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
@run_async
async def test_a_metric_held_back_is_announced_when_its_second_is_over(users, monkeypatch) -> None:
    # The last batch of a burst: held back by the once-a-second limit, then announced by
    # the timer without another batch, so a chart never misses its newest samples.
    monkeypatch.setattr(publish_module, "_metrics_last_published", {})
    comm = communicator(users["viewer"], groups="metrics")
    assert (await comm.connect())[0]
    await comm.receive_json_from(timeout=5)
    assert await sync_to_async(publish_metrics_changed)(["temp_celsius"])
    assert not await sync_to_async(publish_metrics_changed)(["temp_celsius"])
    first = await comm.receive_json_from(timeout=5)
    trailing = await comm.receive_json_from(timeout=5)
    assert first == {"event": "metrics.changed", "payload": {"metrics": ["temp_celsius"]}}
    assert trailing == {"event": "metrics.changed", "payload": {"metrics": ["temp_celsius"]}}
    assert await comm.receive_nothing(timeout=1.5)  # announced once, not again and again
    await comm.disconnect()


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://mon.local:5002", "mon.local:5002", True),
        ("https://mon.local", "mon.local:443", True),
        ("http://mon.local:5002", "mon.local:5003", False),
        ("http://evil.example", "mon.local", False),
        ("", "mon.local", False),
        ("null", "mon.local", False),
    ],
)
def test_origin_must_be_the_host_of_the_socket(origin: str, host: str, allowed: bool) -> None:
    headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
    assert origin_allowed({"headers": headers}) is allowed
