"""Celery shells around the alert evaluation service."""

from celery import shared_task
from django.utils import timezone

from monitoring.periodic import once_per_window


@shared_task(ignore_result=True)
@once_per_window
def evaluate_rules_task(rule_ids: list[int] | None = None) -> str:
    """Evaluate the given rules now (on ingest), or, from beat with no ids, every enabled
    rule whose evaluation interval has elapsed. Safe to run twice or concurrently."""
    from .evaluation import evaluate_rules

    summary = evaluate_rules(rule_ids, now=timezone.now(), only_due=rule_ids is None)
    return summary.line()
