"""The periodic work as django-celery-beat PeriodicTask rows, derived from GlobalSettings.

`PERIODIC_JOBS` is the one table of what runs periodically; `sync_periodic_tasks()` makes
the rows exist, and `apply_interval_changes()` carries a changed global interval to them.
Celery beat runs with the DatabaseScheduler, so a changed row takes effect without a restart.
"""

import importlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from celery import Celery
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app as default_celery_app

from .models import GlobalSettings

log = logging.getLogger("schedule")


@dataclass(frozen=True)
class PeriodicJob:
    name: str  # the PeriodicTask row's name, which identifies the row
    task: str  # the registered Celery task name
    interval_field: str  # the GlobalSettings field holding its interval in seconds


PERIODIC_JOBS: tuple[PeriodicJob, ...] = (
    PeriodicJob("monitoring: system collection", "monitoring.tasks.collect_system_metrics_task", "collection_interval"),
    PeriodicJob("monitoring: prometheus scrape", "monitoring.tasks.scrape_targets_task", "collection_interval"),
    # file_sd/http_sd changes and fleet metrics each interval; the network scan claims its own longer one.
    PeriodicJob("monitoring: discovery", "monitoring.tasks.discover_targets_task", "collection_interval"),
    PeriodicJob("alerts: rule evaluation", "alerts.tasks.evaluate_rules_task", "evaluation_interval"),
    PeriodicJob(
        "healthchecks: due check dispatch", "healthchecks.tasks.dispatch_due_checks_task", "health_dispatch_interval"
    ),
    PeriodicJob("notifications: outbox sweep", "notifications.tasks.sweep_outbox_task", "sweep_interval"),
    PeriodicJob("notifications: escalation sweep", "notifications.tasks.sweep_escalations_task", "sweep_interval"),
    PeriodicJob("monitoring: cleanup", "monitoring.tasks.cleanup_task", "cleanup_interval"),
    PeriodicJob("monitoring: partition maintenance", "monitoring.tasks.maintain_partitions_task", "cleanup_interval"),
    # Its run is also beat's heartbeat (monitoring.watchdog): it runs as often as the sweeps.
    PeriodicJob("monitoring: watchdog", "monitoring.tasks.watch_pipeline_task", "sweep_interval"),
)

INTERVAL_FIELDS: frozenset[str] = frozenset(job.interval_field for job in PERIODIC_JOBS)


@dataclass(frozen=True)
class SyncResult:
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unregistered: tuple[str, ...] = ()  # jobs whose task is not (yet) registered: no row

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unregistered)} skipped (task not registered)"
        )


def is_task_registered(task_name: str, celery_app: Celery = default_celery_app) -> bool:
    """Whether `task_name` is a task of `celery_app`, importing its module first (outside
    a worker, Celery's autodiscovery has not run). A missing module means "not built yet";
    any other import error is a bug and propagates."""
    if task_name in celery_app.tasks:
        return True
    module_name = task_name.rpartition(".")[0]
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            return False
        raise
    return task_name in celery_app.tasks


def _interval(every: int) -> IntervalSchedule:
    # IntervalSchedule has no unique constraint, so several equal rows may exist: reuse any.
    schedule = IntervalSchedule.objects.filter(every=every, period=IntervalSchedule.SECONDS).order_by("pk").first()
    return schedule or IntervalSchedule.objects.create(every=every, period=IntervalSchedule.SECONDS)


def _set_interval(row: PeriodicTask, seconds: int) -> None:
    """Point `row` at `seconds`; an interval of 0 turns the job off. A message older than
    one interval is dropped (`expire_seconds`): the next run does the same work afresh."""
    if seconds > 0:
        row.interval = _interval(seconds)
        row.expire_seconds = seconds
        row.enabled = True
    else:
        row.enabled = False


def sync_periodic_tasks(
    global_settings: GlobalSettings | None = None,
    *,
    celery_app: Celery = default_celery_app,
    jobs: Sequence[PeriodicJob] = PERIODIC_JOBS,
) -> SyncResult:
    """Make a PeriodicTask row exist for every job whose task is registered.

    Idempotent. A missing row is created with the interval of the global settings. An
    existing row keeps its interval and enabled flag, since a person may have edited them
    in the admin; only its task name is corrected. Use `apply_interval_changes()` when a
    global interval changes."""
    if global_settings is None:
        # Read without creating the singleton: the defaults serve until someone saves it.
        global_settings = GlobalSettings.objects.filter(pk=1).first() or GlobalSettings()
    created, updated, unregistered = [], [], []
    with transaction.atomic():
        for job in jobs:
            if not is_task_registered(job.task, celery_app):
                unregistered.append(job.name)
                continue
            row = PeriodicTask.objects.select_for_update().filter(name=job.name).first()
            if row is None:
                row = PeriodicTask(name=job.name, task=job.task, description=_description(job))
                _set_interval(row, getattr(global_settings, job.interval_field))
                row.save()
                created.append(job.name)
            elif row.task != job.task:
                row.task = job.task
                row.save()
                updated.append(job.name)
    result = SyncResult(tuple(created), tuple(updated), tuple(unregistered))
    if created or updated:
        log.info("periodic tasks synced: %s", result.summary())
    return result


def apply_interval_changes(
    before: Mapping[str, int], global_settings: GlobalSettings, *, celery_app: Celery = default_celery_app
) -> list[str]:
    """Carry the global intervals that changed (`before` holds the old values) to their
    rows, overriding a hand-edited interval: the newer decision wins. Returns the names of
    the rows changed."""
    changed_fields = {field for field in INTERVAL_FIELDS if before.get(field) != getattr(global_settings, field)}
    if not changed_fields:
        return []
    sync_periodic_tasks(global_settings, celery_app=celery_app)
    changed = []
    with transaction.atomic():
        for job in _jobs_using(changed_fields):
            row = PeriodicTask.objects.select_for_update().filter(name=job.name).first()
            if row is None:
                continue  # task not registered: no row to change
            _set_interval(row, getattr(global_settings, job.interval_field))
            row.save()
            changed.append(job.name)
    if changed:
        log.info("periodic task intervals changed from global settings: %s", ", ".join(changed))
    return changed


def _jobs_using(fields: Iterable[str]) -> list[PeriodicJob]:
    fields = set(fields)
    return [job for job in PERIODIC_JOBS if job.interval_field in fields]


def _description(job: PeriodicJob) -> str:
    return (
        f"Runs every GlobalSettings.{job.interval_field} seconds. An interval edited here stays "
        f"until {job.interval_field} changes in the global settings; 0 there turns it off."
    )
