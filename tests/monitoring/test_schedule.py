"""The periodic schedule: PeriodicTask rows from the global settings, kept in step."""

import pytest
from celery import Celery
from django.core.management.sql import emit_post_migrate_signal
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks
from django_celery_beat.schedulers import DatabaseScheduler

from monitoring.models import GlobalSettings
from monitoring.schedule import PERIODIC_JOBS, PeriodicJob, is_task_registered, sync_periodic_tasks

pytestmark = pytest.mark.django_db

JOB = {job.task: job for job in PERIODIC_JOBS}
COLLECT = "monitoring.tasks.collect_system_metrics_task"
SCRAPE = "monitoring.tasks.scrape_targets_task"
EVALUATE = "alerts.tasks.evaluate_rules_task"
ESCALATE = "notifications.tasks.sweep_escalations_task"


def do_nothing() -> None:
    pass


def celery_app_with(task_names) -> Celery:
    """A Celery app of its own with a no-op task registered under each name."""
    app = Celery("schedule-test", set_as_current=False)
    for name in task_names:
        app.task(name=name, shared=False)(do_nothing)
    return app


@pytest.fixture
def every_task() -> Celery:
    return celery_app_with(job.task for job in PERIODIC_JOBS)


@pytest.fixture(autouse=True)
def no_rows():
    """Start from an empty schedule (migrate already synced the tasks that exist today)."""
    PeriodicTask.objects.all().delete()


def seconds(task: str) -> int:
    return PeriodicTask.objects.select_related("interval").get(name=JOB[task].name).interval.every


def test_sync_creates_a_row_per_job_with_its_global_interval(every_task):
    GlobalSettings.objects.create(collection_interval=30, evaluation_interval=20, sweep_interval=7)

    result = sync_periodic_tasks(celery_app=every_task)

    assert result.unregistered == ()
    rows = {row.name: row for row in PeriodicTask.objects.select_related("interval")}
    for job in PERIODIC_JOBS:
        row = rows[job.name]
        assert row.task == job.task
        assert row.enabled
        assert row.interval.period == IntervalSchedule.SECONDS
        assert row.expire_seconds == row.interval.every  # a stale run is dropped, not queued up
    assert set(rows) == {job.name for job in PERIODIC_JOBS}
    assert seconds(COLLECT) == 30
    assert seconds(SCRAPE) == 30
    assert seconds(EVALUATE) == 20
    assert seconds(ESCALATE) == 7
    assert seconds("monitoring.tasks.cleanup_task") == 3600


def test_sync_uses_the_defaults_without_creating_the_settings_row(every_task):
    sync_periodic_tasks(celery_app=every_task)

    assert seconds(EVALUATE) == GlobalSettings().evaluation_interval
    assert not GlobalSettings.objects.exists()


def test_sync_creates_no_row_for_a_task_that_is_not_registered(every_task):
    not_built = PeriodicJob("monitoring: not built yet", "monitoring.tasks.not_built_yet_task", "cleanup_interval")

    result = sync_periodic_tasks(celery_app=every_task, jobs=[*PERIODIC_JOBS, not_built])

    assert result.unregistered == (not_built.name,)
    assert not PeriodicTask.objects.filter(task=not_built.task).exists()
    assert PeriodicTask.objects.filter(task=COLLECT).exists()


def test_a_module_that_does_not_exist_means_not_registered():
    assert not is_task_registered("monitoring.no_such_module.some_task", celery_app_with([]))


def test_sync_is_idempotent(every_task):
    sync_periodic_tasks(celery_app=every_task)
    rows_before = list(PeriodicTask.objects.order_by("name").values("id", "interval_id", "enabled", "task"))
    intervals_before = IntervalSchedule.objects.count()
    changed_at = PeriodicTasks.last_change()

    result = sync_periodic_tasks(celery_app=every_task)

    assert result.created == () and result.updated == ()
    assert list(PeriodicTask.objects.order_by("name").values("id", "interval_id", "enabled", "task")) == rows_before
    assert IntervalSchedule.objects.count() == intervals_before
    assert PeriodicTasks.last_change() == changed_at  # beat is not told to reload for nothing


def test_sync_keeps_an_interval_edited_in_the_admin(every_task):
    sync_periodic_tasks(celery_app=every_task)
    row = PeriodicTask.objects.get(name=JOB[EVALUATE].name)
    row.interval = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    row.enabled = False
    row.save()

    sync_periodic_tasks(celery_app=every_task)

    row.refresh_from_db()
    assert row.interval.every == 5
    assert not row.enabled


def test_changing_a_global_interval_updates_its_rows_and_only_those(every_task):
    global_settings = GlobalSettings.objects.create()
    sync_periodic_tasks(celery_app=every_task)
    hand_edited = PeriodicTask.objects.get(name=JOB[EVALUATE].name)
    hand_edited.interval = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    hand_edited.save()

    global_settings.collection_interval = 15
    global_settings.save()

    assert seconds(COLLECT) == 15
    assert seconds(SCRAPE) == 15
    assert seconds(EVALUATE) == 5  # its global interval did not change: the edit stays


def test_a_changed_global_interval_overrides_a_hand_edited_one(every_task):
    global_settings = GlobalSettings.objects.create()
    sync_periodic_tasks(celery_app=every_task)
    hand_edited = PeriodicTask.objects.get(name=JOB[EVALUATE].name)
    hand_edited.interval = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    hand_edited.save()

    global_settings.evaluation_interval = 45
    global_settings.save()

    assert seconds(EVALUATE) == 45


def test_a_global_interval_of_zero_turns_its_jobs_off_and_back_on(every_task):
    global_settings = GlobalSettings.objects.create()
    sync_periodic_tasks(celery_app=every_task)

    global_settings.sweep_interval = 0
    global_settings.save()
    names = [job.name for job in PERIODIC_JOBS if job.interval_field == "sweep_interval"]
    assert not PeriodicTask.objects.filter(name__in=names, enabled=True).exists()

    global_settings.sweep_interval = 20
    global_settings.save()
    assert PeriodicTask.objects.filter(name__in=names, enabled=True, interval__every=20).count() == len(names)


@pytest.mark.django_db(transaction=True)  # beat commits and reconnects as the real process does
def test_beat_sees_a_changed_interval_without_a_restart(every_task):
    global_settings = GlobalSettings.objects.create(evaluation_interval=60)
    sync_periodic_tasks(celery_app=every_task)
    beat = DatabaseScheduler(app=every_task)
    name = JOB[EVALUATE].name
    assert beat.schedule[name].schedule.run_every.total_seconds() == 60
    beat.schedule_changed()  # a tick of beat: it notes when the schedule last changed

    global_settings.evaluation_interval = 25
    global_settings.save()

    assert beat.schedule[name].schedule.run_every.total_seconds() == 25


def test_migrate_creates_the_rows_of_the_tasks_that_exist():
    registered = {job.name for job in PERIODIC_JOBS if is_task_registered(job.task)}
    assert registered, "no periodic task is built yet"

    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")

    assert set(PeriodicTask.objects.values_list("name", flat=True)) >= registered
