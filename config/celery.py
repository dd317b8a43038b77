"""The Celery application; tasks are discovered in each app's tasks.py."""

import os

from celery import Celery
from celery.signals import beat_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("monitoring")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def check_deployment(**kwargs) -> None:
    """Workers and beat run no Django system checks: log what the one about Redis's eviction
    policy finds as they start."""
    from monitoring.checks import log_redis_eviction_policy

    log_redis_eviction_policy()


worker_ready.connect(check_deployment, weak=False)
beat_init.connect(check_deployment, weak=False)
