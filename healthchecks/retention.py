"""Retention of health check results: a step of the cleanup (monitoring.retention)."""

from collections.abc import Callable
from datetime import datetime

from monitoring.retention import delete_queryset_in_batches

from .models import HealthCheck, HealthCheckResult


def cleanup_results(
    *, cutoff: datetime, batch_size: int, dry_run: bool, progress: Callable[[int], None] | None = None
) -> int:
    """Remove the results checked before `cutoff`, except the last result of each check: the
    check shows its current state from it, however long ago it ran (a disabled check)."""
    old = HealthCheckResult.objects.filter(checked_at__lt=cutoff).exclude(
        pk__in=HealthCheck.objects.filter(last_result__isnull=False).values("last_result_id")
    )
    if dry_run:
        return old.count()
    return delete_queryset_in_batches(old, batch_size=batch_size, progress=progress)
