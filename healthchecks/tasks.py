"""Celery shells around the health check services."""

from celery import shared_task
from django.utils import timezone

from monitoring.periodic import once_per_window

from .choices import HealthStatus


@shared_task(ignore_result=True)
@once_per_window
def dispatch_due_checks_task() -> str:
    """Beat's tick: claim the due checks and queue them in batches. Safe to run twice: a
    claimed check is not due for the second tick."""
    from .services import dispatch_due_checks

    return dispatch_due_checks(now=timezone.now()).line()


@shared_task(ignore_result=True)
def run_checks_task(claim_token: str, check_ids: list[int]) -> str:
    """Run one batch of claimed checks concurrently and record the results. A duplicate of
    this task finds the claim taken over and runs nothing."""
    from .services import run_claimed_checks

    results = run_claimed_checks(claim_token=claim_token, check_ids=check_ids, now=timezone.now())
    down = sum(1 for result in results if result.status == HealthStatus.CRITICAL)
    return f"ran {len(results)} of {len(check_ids)} check(s), {down} critical"
