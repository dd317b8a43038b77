"""The one way live updates leave the server: `publish(group, event, payload)` sends to a
channel-layer group that dashboard pages subscribe to. Services call it through
`transaction.on_commit`, so a page never shows a change that was rolled back."""

import logging
import threading
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
# metric has new samples (they then fetch the chart data again). A metric held back is
# announced when its second is over (the trailing edge), so the last batch is never missed.
METRICS_PUBLISH_INTERVAL_S = 1.0
_metrics_last_published: dict[str, float] = {}
_metrics_held: set[str] = set()
_trailing: threading.Timer | None = None
_metrics_lock = threading.Lock()


def publish_metrics_changed(metric_names: Iterable[str], *, now: float | None = None) -> bool:
    """Tell the Metrics pages that these metrics have new samples: one `metrics.changed`
    event, holding back the metrics this process announced less than a second ago, which
    a timer announces once their second is over; so a flood of batches costs one message a
    second and the last batch of a burst still reaches the pages. For the ingestion path to
    call after its commit (`transaction.on_commit`)."""
    now = time.monotonic() if now is None else now
    names = set(metric_names)
    with _metrics_lock:
        due = sorted(
            name
            for name in names
            if now - _metrics_last_published.get(name, float("-inf")) >= METRICS_PUBLISH_INTERVAL_S
        )
        held = names.difference(due)
        if held:
            _metrics_held.update(held)
            wait = min(_metrics_last_published[name] for name in held) + METRICS_PUBLISH_INTERVAL_S - now
            _announce_held_later(wait)
        if len(_metrics_last_published) > 100_000:  # unbounded metric names: start over
            _metrics_last_published.clear()
        for name in due:
            _metrics_last_published[name] = now
            _metrics_held.discard(name)
    if not due:
        return False
    return publish(GROUP_METRICS, "metrics.changed", {"metrics": due})


def _announce_held_later(wait: float) -> None:
    """Start the trailing-edge timer unless one is waiting already (under _metrics_lock)."""
    global _trailing
    if _trailing is not None and _trailing.is_alive():
        return
    _trailing = threading.Timer(min(max(wait, 0.0), METRICS_PUBLISH_INTERVAL_S), _announce_held)
    _trailing.daemon = True
    _trailing.start()


def _announce_held() -> None:
    global _trailing
    with _metrics_lock:
        _trailing = None  # this timer is done: a metric still inside its second needs a new one
        held = set(_metrics_held)
        _metrics_held.clear()
    if held:
        publish_metrics_changed(held)
