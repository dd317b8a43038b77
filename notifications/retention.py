"""Retention of the notification history: a step of the cleanup (monitoring.retention)."""

from collections.abc import Callable
from datetime import datetime

from monitoring.retention import delete_queryset_in_batches

from .choices import NotificationStatus
from .models import Notification

# A row still to be delivered is the outbox, not history: it stays whatever its age.
UNDELIVERED = (NotificationStatus.PENDING, NotificationStatus.SENDING)


def cleanup_notifications(
    *, cutoff: datetime, batch_size: int, dry_run: bool, progress: Callable[[int], None] | None = None
) -> int:
    """Remove the notifications created before `cutoff` that are no longer pending or being sent."""
    old = Notification.objects.filter(created_at__lt=cutoff).exclude(status__in=UNDELIVERED)
    if dry_run:
        return old.count()
    return delete_queryset_in_batches(old, batch_size=batch_size, progress=progress)
