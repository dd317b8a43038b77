"""When checks are due, and how a fleet of due checks is cut into batches. Pure helpers
and the one query filter that the dispatcher and every claim share."""

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from django.db.models import Q


def due_filter(now: datetime, *, claim_timeout: float) -> Q:
    """Enabled checks whose time has come and that nobody runs (or whose claim went stale:
    a worker that died mid-run, or a task message that was lost)."""
    return (
        Q(enabled=True)
        & (Q(next_due_at__isnull=True) | Q(next_due_at__lte=now))
        & unclaimed_filter(now, claim_timeout=claim_timeout)
    )


def unclaimed_filter(now: datetime, *, claim_timeout: float) -> Q:
    return Q(running_since__isnull=True) | Q(running_since__lt=now - timedelta(seconds=claim_timeout))


def next_due_at(*, checked_at: datetime, interval: float) -> datetime:
    """A check runs again `interval` seconds after its last start, which keeps the phase
    that the jitter of its first run gave it."""
    return checked_at + timedelta(seconds=max(1.0, interval))


def batches(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    size = max(1, size)
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])
