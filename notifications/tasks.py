"""Celery shells around the outbox and escalation services. They run on the
`notifications` queue (settings.CELERY_TASK_ROUTES), are safe to run twice or at once,
and return a one-line summary."""

from celery import shared_task
from django.utils import timezone

from monitoring.periodic import once_per_window


@shared_task(ignore_result=True)
def deliver_notifications_task(notification_ids: list[int]) -> str:
    """Deliver rows queued by a transition that just committed (those still due)."""
    from .outbox import deliver_notifications

    return deliver_notifications(notification_ids).line()


@shared_task(ignore_result=True)
@once_per_window
def sweep_outbox_task() -> str:
    """Deliver every due row: retries, rows whose task was lost, rows of a worker that died."""
    from .outbox import sweep_outbox

    return sweep_outbox().line()


@shared_task(ignore_result=True)
@once_per_window
def sweep_escalations_task() -> str:
    """Send due escalation steps; notify alerts whose silence or suppression ended."""
    from .services import sweep_escalations

    return sweep_escalations(now=timezone.now()).line()
