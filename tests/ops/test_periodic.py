"""Periodic tasks do their work once per window: a second run of the same window (two beats
overlapping, a message delivered twice) does nothing; the next window runs again."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from celery import shared_task
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from alerts.tasks import evaluate_rules_task
from monitoring.models import GlobalSettings, PeriodicRun, Sample
from monitoring.periodic import WINDOW_HEADER, claim_window, job_interval, run_in_window, window_start
from monitoring.tasks import collect_system_metrics_task
from tests.alerts.test_concurrency import run_at_once, shared_db  # noqa: F401 (a fixture: threads on a real file or server)

COLLECT = "monitoring.tasks.collect_system_metrics_task"
EVALUATE = "alerts.tasks.evaluate_rules_task"
# A whole hour within the retention of PeriodicRun rows (a day by default).
T0 = float(int(time.time()) // 3600 * 3600 - 3600)


@pytest.mark.parametrize(
    ("at", "every", "start"),
    [
        (T0, 60, T0),
        (T0 + 59.999, 60, T0),
        (T0 + 60, 60, T0 + 60),
        (T0 + 25, 10, T0 + 20),
        (T0 + 1799, 3600, T0),
        (T0 - 1, 3600, T0 - 3600),
        (T0 + 3.25, None, T0 + 3.25),  # no interval: the instant is its own window
        (T0 + 3.25, 0, T0 + 3.25),
    ],
)
def test_window_start_is_the_interval_boundary_at_or_before(at, every, start):
    assert window_start(at, every) == datetime.fromtimestamp(start, UTC)


def beat_headers(at: float, every: float | None = 60) -> dict:
    return {WINDOW_HEADER: {"at": at, "every": every}}


@pytest.mark.django_db
def test_the_same_window_collects_once_and_the_next_window_again():
    first = collect_system_metrics_task.apply(headers=beat_headers(T0 + 1)).get()
    samples = Sample.objects.count()
    second = collect_system_metrics_task.apply(headers=beat_headers(T0 + 30)).get()

    assert first.startswith("system metrics:") and samples > 0
    assert second == f"skipped: window {datetime.fromtimestamp(T0, UTC).isoformat()} already run"
    assert Sample.objects.count() == samples  # the second run stored nothing
    run = PeriodicRun.objects.get(job=COLLECT)
    assert run.window_start == datetime.fromtimestamp(T0, UTC)
    assert run.ok is True and run.detail == first and run.finished_at >= run.claimed_at

    third = collect_system_metrics_task.apply(headers=beat_headers(T0 + 61)).get()

    assert third.startswith("system metrics:")
    assert Sample.objects.count() > samples
    assert PeriodicRun.objects.filter(job=COLLECT, ok=True).count() == 2


@pytest.mark.django_db
def test_evaluation_from_beat_is_claimed_and_on_ingest_or_by_hand_is_not():
    first = evaluate_rules_task.apply(headers=beat_headers(T0)).get()
    again = evaluate_rules_task.apply(headers=beat_headers(T0 + 5)).get()
    on_ingest = [evaluate_rules_task.apply(kwargs={"rule_ids": []}).get() for _ in range(2)]
    by_hand = [evaluate_rules_task.apply().get(), evaluate_rules_task()]

    assert not first.startswith("skipped") and again.startswith("skipped")
    assert not any(line.startswith("skipped") for line in on_ingest + by_hand)
    assert list(PeriodicRun.objects.values_list("job", "ok")) == [(EVALUATE, True)]


@pytest.mark.django_db
def test_a_run_sent_by_the_stock_database_scheduler_is_claimed_in_nows_window():
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.DAYS)
    PeriodicTask.objects.filter(task=EVALUATE).update(interval=every)
    stock = {"periodic_task_name": "alerts: rule evaluation"}  # the only header it adds

    first = evaluate_rules_task.apply(headers=stock).get()
    again = evaluate_rules_task.apply(headers=stock).get()

    assert not first.startswith("skipped") and again.startswith("skipped")
    run = PeriodicRun.objects.get(job=EVALUATE)
    assert run.window_start == window_start(timezone.now().timestamp(), 86400)


@pytest.mark.django_db
def test_a_failed_window_records_the_error_and_may_be_retried_but_a_successful_one_not():
    start = datetime.fromtimestamp(T0, UTC)
    calls = []

    def failing() -> str:
        calls.append("fail")
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        run_in_window("job.failing", start, failing)
    run = PeriodicRun.objects.get(job="job.failing")
    assert run.ok is False and run.detail == "RuntimeError: database went away"

    assert run_in_window("job.failing", start, lambda: calls.append("retry") or "done") == "done"
    assert run_in_window("job.failing", start, lambda: calls.append("again") or "done").startswith("skipped")

    assert calls == ["fail", "retry"]
    run.refresh_from_db()
    assert run.ok is True and run.detail == "done"


@pytest.mark.django_db
def test_a_claim_costs_a_fixed_number_of_queries(django_assert_num_queries):
    start = datetime.fromtimestamp(T0, UTC)
    # savepoint, INSERT, release, DELETE of old rows, UPDATE with the outcome
    with django_assert_num_queries(5):
        run_in_window("job.counted", start, lambda: "done")
    # savepoint, INSERT (conflict), rollback to and release of the savepoint, the conditional
    # UPDATE that would retake a failed run
    with django_assert_num_queries(5):
        run_in_window("job.counted", start, lambda: "done")


@pytest.mark.django_db
def test_rows_older_than_the_retention_go_when_the_job_claims_again(settings):
    settings.MONITORING_PERIODIC_RUN_RETENTION = 3600
    now = timezone.now()
    PeriodicRun.objects.create(job="job.kept", window_start=now - timedelta(hours=2), claimed_at=now)
    PeriodicRun.objects.create(job="job.pruned", window_start=now - timedelta(hours=2), claimed_at=now)
    PeriodicRun.objects.create(job="job.pruned", window_start=now - timedelta(minutes=30), claimed_at=now)

    assert claim_window(job="job.pruned", start=now, now=now)

    assert PeriodicRun.objects.filter(job="job.pruned").count() == 2
    assert PeriodicRun.objects.filter(job="job.kept").count() == 1  # another job's rows are its own


@pytest.mark.django_db
def test_the_interval_of_a_run_not_sent_by_beat_is_the_rows_then_the_global_settings():
    GlobalSettings.objects.create(evaluation_interval=45)
    PeriodicTask.objects.filter(task=EVALUATE).delete()
    assert job_interval(EVALUATE) == 45

    every = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(name="alerts: rule evaluation", task=EVALUATE, interval=every)
    assert job_interval(EVALUATE) == 120  # a hand edit in the admin is what beat runs
    assert job_interval("monitoring.tasks.scrape_target_batch_task") is None  # not periodic


@pytest.mark.usefixtures("shared_db")
def test_concurrent_claims_of_one_window_have_one_winner():
    start = datetime.fromtimestamp(T0, UTC)

    def claim(_: int) -> bool:
        try:
            return claim_window(job="job.raced", start=start, now=timezone.now())
        finally:
            connection.close()

    results = run_at_once(claim, threads=6)

    assert results.count(True) == 1
    assert PeriodicRun.objects.filter(job="job.raced").count() == 1


@shared_task(name="tests.ops.collect_inside_another_task")
def collect_inside_another_task() -> str:
    return collect_system_metrics_task()


@pytest.mark.django_db
def test_a_periodic_tasks_function_called_by_another_task_is_not_claimed_with_its_headers():
    lines = [collect_inside_another_task.apply(headers=beat_headers(T0)).get() for _ in range(2)]

    assert all(line.startswith("system metrics:") for line in lines)
    assert not PeriodicRun.objects.exists()
