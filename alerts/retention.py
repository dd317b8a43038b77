"""Retention of closed alerts: a step of the cleanup (monitoring.retention), after the
notifications' step."""

from collections.abc import Callable
from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet

from monitoring.retention import delete_queryset_in_batches
from notifications.models import Notification
from notifications.retention import UNDELIVERED

from .choices import AlertState
from .models import Alert


def expired_alerts(cutoff: datetime) -> QuerySet:
    """Alerts closed before `cutoff` (resolved, or dropped while pending) none of whose
    notifications is kept: still to be delivered, or created at or after the cutoff."""
    kept = Notification.objects.filter(alert=OuterRef("pk")).filter(
        Q(status__in=UNDELIVERED) | Q(created_at__gte=cutoff)
    )
    closed = Q(state=AlertState.RESOLVED, resolved_at__lt=cutoff) | Q(state=AlertState.INACTIVE, updated_at__lt=cutoff)
    return Alert.objects.filter(closed).exclude(Exists(kept))


def cleanup_alerts(
    *, cutoff: datetime, batch_size: int, dry_run: bool, progress: Callable[[int], None] | None = None
) -> int:
    """Remove the expired alerts with their events, each batch after its alerts' remaining
    notifications (Notification.alert protects an alert from being deleted before them)."""
    old = expired_alerts(cutoff)
    if dry_run:
        return old.count()

    def delete_notifications(alert_ids: list[int]) -> None:
        Notification.objects.filter(alert_id__in=alert_ids).exclude(status__in=UNDELIVERED).delete()

    return delete_queryset_in_batches(old, batch_size=batch_size, progress=progress, before_delete=delete_notifications)
