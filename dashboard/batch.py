"""Live updates of a transaction, sent together once it commits: a storm of a thousand alert
transitions costs one channel-layer message per group, not one per transition (each
`publish` is a Redis round trip through async_to_sync, about 2 ms)."""

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .publish import publish

# The event that carries two or more events of one transaction: its payload is
# {"events": [{"event": ..., "payload": ...}, ...]} in the order they were recorded.
BATCH_EVENT = "batch"
# Events per batch message, so that one frame to a page stays small (about 200 bytes each).
BATCH_LIMIT = 500


class LiveBatch:
    """The events of one transaction (at one savepoint depth), by group; registered as an
    on_commit callback, so a rolled-back transaction or savepoint drops them with it."""

    def __init__(self) -> None:
        self.events: dict[str, list[dict]] = {}

    def add(self, group: str, event: str, payload: dict) -> None:
        self.events.setdefault(group, []).append({"event": event, "payload": payload})

    def __call__(self) -> None:
        for group, events in self.events.items():
            send_events(group, events)


def publish_after_commit(group: str, event: str, payload: dict) -> None:
    """Send `event` to `group` once the current transaction commits, in one message with the
    transaction's other events for that group (at once outside a transaction)."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        publish(group, event, payload)
        return
    _batch_of(connection).add(group, event, payload)


def send_events(group: str, events: list[dict]) -> bool:
    """One message for `events` ({"event", "payload"} each), one per BATCH_LIMIT of them: a
    lone event as itself, so the common case (a person acknowledging one alert) is the same
    on the wire as ever. False if any message could not be sent."""
    if len(events) == 1:
        return publish(group, events[0]["event"], events[0]["payload"])
    sent = True
    for start in range(0, len(events), BATCH_LIMIT):
        sent = publish(group, BATCH_EVENT, {"events": events[start : start + BATCH_LIMIT]}) and sent
    return sent


def _batch_of(connection: BaseDatabaseWrapper) -> LiveBatch:
    """The batch of the current transaction and savepoint depth, made on first use.

    Django drops a rolled-back savepoint's on_commit callbacks: keying batches by the open
    savepoints makes events recorded inside one go with it, never announced for a change
    that was undone. A commit, a rollback or a savepoint rollback replaces the connection's
    callback list, which retires the batches found through the old one."""
    callbacks = connection.run_on_commit
    known = getattr(connection, "_dashboard_live_batches", None)
    if known is None or known[0] is not callbacks:
        known = (callbacks, {})
        connection._dashboard_live_batches = known
    savepoints = tuple(connection.savepoint_ids)
    batch = known[1].get(savepoints)
    if batch is None:
        batch = known[1][savepoints] = LiveBatch()
        transaction.on_commit(batch, robust=True)
    return batch
