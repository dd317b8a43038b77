"""Each kind of work has its Celery queue: ingestion and evaluation on `celery`, health checks
on their own, notifications on their own; a worker without -Q consumes all three."""

import pytest
from django.conf import settings

from config.celery import app

ROUTES = [
    ("monitoring.tasks.collect_system_metrics_task", "celery"),
    ("monitoring.tasks.scrape_target_batch_task", "celery"),
    ("alerts.tasks.evaluate_rules_task", "celery"),
    ("monitoring.tasks.cleanup_task", "celery"),
    ("healthchecks.tasks.dispatch_due_checks_task", "healthchecks"),
    ("healthchecks.tasks.run_checks_task", "healthchecks"),
    ("notifications.tasks.deliver_notifications_task", "notifications"),
    ("notifications.tasks.sweep_outbox_task", "notifications"),
    ("notifications.tasks.sweep_escalations_task", "notifications"),
]


@pytest.mark.parametrize(("task", "queue"), ROUTES)
def test_each_task_goes_to_its_queue(task, queue):
    assert app.amqp.router.route({}, task)["queue"].name == queue
    # beat's messages name no queue (django-celery-beat sends queue=None): the route decides
    assert app.amqp.router.route({"queue": None, "exchange": None, "routing_key": None}, task)["queue"].name == queue


def test_a_worker_without_queues_named_consumes_every_queue():
    assert settings.HEALTHCHECK_QUEUE == "healthchecks" and settings.NOTIFICATIONS_QUEUE == "notifications"
    assert set(settings.CELERY_TASK_QUEUES) == {"celery", "healthchecks", "notifications"}
    # (other tests may have added queues of their own to the app since it started)
    assert {"celery", "healthchecks", "notifications"} <= set(app.amqp.queues)
