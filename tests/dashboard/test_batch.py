"""Live updates of a transaction sent together after it commits (dashboard.batch): an alert
storm reaches a page as one message, a lone transition as itself, and nothing of a
rolled-back transaction or savepoint is announced. Over the real channel layer (Redis)."""

import asyncio
import functools
from uuid import uuid4

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.utils import timezone

from alerts.evaluation import evaluate_rules
from alerts.lifecycle import acknowledge_alert
from alerts.models import Alert, AlertRule
from dashboard.batch import BATCH_EVENT, BATCH_LIMIT, publish_after_commit
from dashboard.consumers import LiveConsumer
from dashboard.publish import GROUP_ALERTS, GROUP_HEALTH
from monitoring.choices import AuditSource

HEADERS = [(b"host", b"testserver"), (b"origin", b"http://testserver")]


def run_async(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return async_to_sync(test)(*args, **kwargs)

    return wrapper


class Listener:
    """A channel of the real channel layer subscribed to groups, as a consumer would be."""

    def __init__(self, *groups: str) -> None:
        self.layer = get_channel_layer()
        # A plain channel name (no "!"): receiving on it binds nothing to an event loop, so
        # each async_to_sync call may use a loop of its own.
        self.channel = f"test-listener.{uuid4().hex}"
        self.groups = groups
        for group in groups:
            async_to_sync(self.layer.group_add)(group, self.channel)

    def messages(self, quiet_s: float = 0.5) -> list[dict]:
        """Every message that arrives until none has for `quiet_s`."""

        async def drain() -> list[dict]:
            received = []
            while True:
                try:
                    received.append(await asyncio.wait_for(self.layer.receive(self.channel), quiet_s))
                except TimeoutError:
                    return received

        return async_to_sync(drain)()

    def close(self) -> None:
        for group in self.groups:
            async_to_sync(self.layer.group_discard)(group, self.channel)


@pytest.fixture
def listener():
    made = []

    def make(*groups: str) -> Listener:
        made.append(Listener(*groups))
        return made[-1]

    yield make
    for item in made:
        item.close()


def storm(make_series, hosts: int) -> AlertRule:
    """`hosts` series of a metric over the threshold of a rule without duration."""
    now_ms = int(timezone.now().timestamp() * 1000)
    for n in range(hosts):
        make_series("storm_metric", {"host": f"h{n}"}, [(now_ms - 1000, 99.0)])
    return AlertRule.objects.create(name="Storm", key="storm", metric="storm_metric", comparison=">", threshold=90)


@pytest.mark.django_db(transaction=True)
def test_a_storm_of_transitions_is_one_message_with_every_transition_in_order(make_series, listener):
    storm(make_series, 40)
    alerts = listener(GROUP_ALERTS)

    evaluate_rules(now=timezone.now())

    messages = alerts.messages()
    assert len(messages) == 1
    assert messages[0]["event"] == BATCH_EVENT
    events = messages[0]["payload"]["events"]
    assert [event["event"] for event in events] == ["alert.transition"] * 40
    assert sorted(event["payload"]["id"] for event in events) == sorted(Alert.objects.values_list("id", flat=True))
    assert {event["payload"]["state"] for event in events} == {"active"}
    assert events[0]["payload"]["labels"]["host"].startswith("h")


@pytest.mark.django_db(transaction=True)
def test_a_lone_transition_is_sent_as_itself(make_series, listener, users):
    storm(make_series, 1)
    evaluate_rules(now=timezone.now())
    alert = Alert.objects.get()
    alerts = listener(GROUP_ALERTS)

    acknowledge_alert(alert_id=alert.pk, user=users["operator"], source=AuditSource.API, now=timezone.now())

    [message] = alerts.messages()
    assert message["event"] == "alert.transition"
    assert (message["payload"]["id"], message["payload"]["state"], message["payload"]["from"]) == (
        alert.pk,
        "acknowledged",
        "active",
    )


@pytest.mark.django_db(transaction=True)
def test_events_go_to_their_own_groups_and_nothing_of_a_rollback_is_sent(listener):
    alerts, health = listener(GROUP_ALERTS), listener(GROUP_HEALTH)
    with transaction.atomic():
        publish_after_commit(GROUP_ALERTS, "alert.transition", {"id": 1})
        publish_after_commit(GROUP_HEALTH, "health.state_changed", {"changes": []})
        try:
            with transaction.atomic():
                publish_after_commit(GROUP_ALERTS, "alert.transition", {"id": 2})
                raise RuntimeError("undo the savepoint")
        except RuntimeError:
            pass
        with transaction.atomic():  # a savepoint that is kept
            publish_after_commit(GROUP_ALERTS, "alert.transition", {"id": 3})
        publish_after_commit(GROUP_ALERTS, "alert.transition", {"id": 4})
        assert alerts.messages(quiet_s=0.2) == []  # nothing before the commit
    try:
        with transaction.atomic():
            publish_after_commit(GROUP_ALERTS, "alert.transition", {"id": 5})
            raise RuntimeError("undo the transaction")
    except RuntimeError:
        pass

    sent = alerts.messages()
    ids = [event["payload"]["id"] for message in sent for event in message["payload"].get("events", [message])]
    assert ids == [1, 3, 4]  # in order; 2 and 5 were rolled back
    assert [message["event"] for message in health.messages()] == ["health.state_changed"]


@pytest.mark.django_db(transaction=True)
@run_async
async def test_the_live_socket_relays_a_storm_as_one_frame(make_series, users):
    await sync_to_async(storm)(make_series, 5)
    comm = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/?groups=alerts", headers=HEADERS)
    comm.scope["user"] = users["viewer"]
    assert (await comm.connect())[0]
    await comm.receive_json_from(timeout=5)  # hello

    await sync_to_async(evaluate_rules)(now=timezone.now())

    frame = await comm.receive_json_from(timeout=5)
    assert frame["event"] == BATCH_EVENT
    assert [event["payload"]["state"] for event in frame["payload"]["events"]] == ["active"] * 5
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
def test_a_huge_batch_is_split_so_no_frame_grows_without_bound(listener):
    alerts = listener(GROUP_ALERTS)
    with transaction.atomic():
        for n in range(BATCH_LIMIT + 1):
            publish_after_commit(GROUP_ALERTS, "alert.transition", {"id": n})

    sent = alerts.messages()
    assert [len(message["payload"]["events"]) for message in sent] == [BATCH_LIMIT, 1]
    assert [event["payload"]["id"] for message in sent for event in message["payload"]["events"]] == list(
        range(BATCH_LIMIT + 1)
    )
