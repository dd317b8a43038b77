"""Celery shells around the outbox and escalation services. They run on the
`notifications` queue (settings.CELERY_TASK_ROUTES), are safe to run twice or at once,
and return a one-line summary.

The two that send are acknowledged when they start (`acks_late=False`), unlike the other
tasks: a worker cancels running late-acknowledged tasks when it loses the broker, and a
send cut off on the wire is sent again after its lease, a duplicate at the receiver. Their
durability is the outbox's (rows, leases, the sweep), not the broker message's."""

from celery import shared_task
from django.utils import timezone

from monitoring.periodic import once_per_window


@shared_task(ignore_result=True, acks_late=False)
def deliver_notifications_task(notification_ids: list[int]) -> str:
    """Deliver rows queued by a transition that just committed (those still due)."""
    from .outbox import deliver_notifications

    return deliver_notifications(notification_ids).line()


@shared_task(ignore_result=True, acks_late=False)
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
