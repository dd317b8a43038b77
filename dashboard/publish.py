"""The one way live updates leave the server: `publish(group, event, payload)` sends to a
channel-layer group that dashboard pages subscribe to. Services call it through
`transaction.on_commit`, so a page never shows a change that was rolled back."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger("dashboard")

# Groups the pages subscribe to.
GROUP_ALERTS = "alerts"
GROUP_HEALTH = "health"
GROUP_METRICS = "metrics"
GROUP_EVENTS = "events"

publish_failures = 0


def publish(group: str, event: str, payload: dict) -> bool:
    """Send one event to a group. A failed publish is logged and counted, never raised:
    the change itself is already stored, and pages re-sync on reconnect."""
    global publish_failures
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        async_to_sync(layer.group_send)(group, {"type": "live.event", "event": event, "payload": payload})
    except Exception as exc:  # the channel layer (Redis) being away must not fail the caller
        publish_failures += 1
        log.warning("publish to %s failed: %s: %s", group, exc.__class__.__name__, exc)
        return False
    return True
