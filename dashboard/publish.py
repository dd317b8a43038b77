"""The one way live updates leave the server: `publish(group, event, payload)` sends to a
channel-layer group that dashboard pages subscribe to. Services call it through
`transaction.on_commit`, so a page never shows a change that was rolled back."""

import logging
import time
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from redis.exceptions import TimeoutError as RedisTimeoutError

from monitoring.watchdog import flush_publish_failures, note_publish_failure

log = logging.getLogger("dashboard")

# Groups the pages subscribe to.
GROUP_ALERTS = "alerts"
GROUP_HEALTH = "health"
GROUP_METRICS = "metrics"
GROUP_EVENTS = "events"

publish_failures = 0
# After a publish timed out (a Redis that hangs rather than refuses), this process drops its
# publishes for this long instead of making every push and transition wait out the timeout.
PAUSE_AFTER_TIMEOUT_S = 10.0
_paused_until = 0.0


def publish(group: str, event: str, payload: dict) -> bool:
    """Send one event to a group. A failed publish is logged and counted, never raised:
    the change itself is already stored, and pages re-sync on reconnect."""
    global publish_failures, _paused_until
    layer = get_channel_layer()
    if layer is None:
        return False
    if time.monotonic() < _paused_until:
        publish_failures += 1
        note_publish_failure()
        return False
    try:
        async_to_sync(layer.group_send)(group, {"type": "live.event", "event": event, "payload": payload})
    except Exception as exc:  # the channel layer (Redis) being away must not fail the caller
        publish_failures += 1
        note_publish_failure()
        if isinstance(exc, TimeoutError | RedisTimeoutError):
            _paused_until = time.monotonic() + PAUSE_AFTER_TIMEOUT_S
        log.warning("publish to %s failed: %s: %s", group, exc.__class__.__name__, exc)
        return False
    flush_publish_failures()  # failures counted while Redis was away reach the shared counter
    return True


# Ingestion runs many batches a second; pages need to hear at most this often that a
# metric has new samples (they then fetch the chart data again).
METRICS_PUBLISH_INTERVAL_S = 1.0
_metrics_last_published: dict[str, float] = {}


def publish_metrics_changed(metric_names: Iterable[str], *, now: float | None = None) -> bool:
    """Tell the Metrics pages that these metrics have new samples: one `metrics.changed`
    event, leaving out the metrics this process announced less than a second ago, so a
    flood of batches costs one message a second. For the ingestion path to call after its
    commit (`transaction.on_commit`)."""
    now = time.monotonic() if now is None else now
    due = sorted(
        name
        for name in set(metric_names)
        if now - _metrics_last_published.get(name, float("-inf")) >= METRICS_PUBLISH_INTERVAL_S
    )
    if not due:
        return False
    if len(_metrics_last_published) > 100_000:  # unbounded metric names: start over
        _metrics_last_published.clear()
    for name in due:
        _metrics_last_published[name] = now
    return publish(GROUP_METRICS, "metrics.changed", {"metrics": due})
