"""Periodic tasks do their work once per window of their interval, however many beats sent
them: the first run of a window claims it by inserting a PeriodicRun row (unique per job and
window), a second run loses the insert and returns; the row then records the outcome."""

import functools
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from celery import current_task
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import PeriodicRun

log = logging.getLogger("periodic")

# The message header in which the beat scheduler (monitoring.leader) sends when it scheduled
# the run and the interval: {"at": epoch seconds, "every": seconds or None}.
WINDOW_HEADER = "monitoring_window"
BEAT_ROW_HEADER = "periodic_task_name"  # django-celery-beat names the row of every message it sends
DETAIL_LIMIT = 2000


def window_start(at: float, every: float | None) -> datetime:
    """The start of the window of `every` seconds that holds the instant `at` (epoch
    seconds): windows are aligned on the epoch, so every process computes the same ones.
    Without an interval, the instant itself (each run a window of its own)."""
    if not every or every <= 0:
        return datetime.fromtimestamp(at, UTC)
    return datetime.fromtimestamp(math.floor(at / every) * every, UTC)


def claim_window(*, job: str, start: datetime, now: datetime) -> bool:
    """Claim (job, start) for this run; False when another run holds it. The claim is an
    INSERT that loses on the unique constraint (SQLite and PostgreSQL alike). A window whose
    run failed may be claimed again (a retry of that run) by a conditional UPDATE; one that
    succeeded or is still running may not. Rows older than MONITORING_PERIODIC_RUN_RETENTION
    go at the same time, so the table stays small."""
    try:
        with transaction.atomic():
            PeriodicRun.objects.create(job=job, window_start=start, claimed_at=now)
    except IntegrityError:
        retaken = PeriodicRun.objects.filter(job=job, window_start=start, ok=False).update(
            claimed_at=now, finished_at=None, ok=None, detail=""
        )
        return retaken == 1
    cutoff = now - timedelta(seconds=settings.MONITORING_PERIODIC_RUN_RETENTION)
    PeriodicRun.objects.filter(job=job, window_start__lt=min(cutoff, start)).delete()
    return True


def finish_run(*, job: str, start: datetime, ok: bool, detail: str, now: datetime) -> None:
    PeriodicRun.objects.filter(job=job, window_start=start).update(finished_at=now, ok=ok, detail=detail[:DETAIL_LIMIT])


def run_in_window(job: str, start: datetime, work: Callable[[], str]) -> str:
    """Run `work` unless (job, start) was claimed already; record its outcome (its summary
    line, or the exception, which propagates, and a retry may claim the window again). A run
    whose worker died stays unfinished and its window is not run again: the next window does
    the same work afresh."""
    if not claim_window(job=job, start=start, now=timezone.now()):
        log.info("%s: window %s already claimed by another run, skipped", job, start.isoformat())
        return f"skipped: window {start.isoformat()} already run"
    try:
        summary = work()
    except Exception as exc:
        finish_run(job=job, start=start, ok=False, detail=f"{exc.__class__.__name__}: {exc}", now=timezone.now())
        raise
    finish_run(job=job, start=start, ok=True, detail=str(summary), now=timezone.now())
    return summary


def job_interval(job: str) -> float | None:
    """Seconds between runs of `job`: its PeriodicTask row's interval (what beat uses, a hand
    edit included), else its GlobalSettings field; None for a job that is not periodic."""
    from django_celery_beat.models import PeriodicTask

    from .models import GlobalSettings
    from .schedule import PERIODIC_JOBS

    periodic_job = next((j for j in PERIODIC_JOBS if j.task == job), None)
    if periodic_job is None:
        return None
    row = PeriodicTask.objects.filter(name=periodic_job.name).select_related("interval").first()
    if row is not None and row.interval is not None:
        return row.interval.schedule.run_every.total_seconds()
    global_settings = GlobalSettings.objects.filter(pk=1).first() or GlobalSettings()
    return getattr(global_settings, periodic_job.interval_field) or None


def _request_header(job: str, name: str) -> object:
    """A header of the message that started the current task when that task is `job` (not
    another task calling `job`'s function): a worker puts custom headers on the request
    itself, `Task.apply` under `headers`."""
    request = getattr(current_task, "request", None)
    if request is None or getattr(current_task, "name", None) != job:
        return None
    return getattr(request, name, None) or (getattr(request, "headers", None) or {}).get(name)


def _beat_window(job: str) -> tuple[float, float | None] | None:
    """(scheduled at, interval) of a run that beat sent, None for any other run. Our
    scheduler sends both in WINDOW_HEADER; django-celery-beat's own DatabaseScheduler only
    names its row (`periodic_task_name`), and then the window is now's."""
    window = _request_header(job, WINDOW_HEADER)
    if isinstance(window, dict) and isinstance(window.get("at"), int | float):
        every = window.get("every")
        return float(window["at"]), float(every) if isinstance(every, int | float) else job_interval(job)
    if _request_header(job, BEAT_ROW_HEADER):
        return timezone.now().timestamp(), job_interval(job)
    return None


def once_per_window(task_function: Callable[..., str]) -> Callable[..., str]:
    """Make a periodic task do its work once per window when beat sent it. A run by hand
    (`task()`, `.delay()` without beat) and a call with arguments (evaluation on ingest) always
    run. Put it under @shared_task: the task keeps its name."""
    job = f"{task_function.__module__}.{task_function.__name__}"

    @functools.wraps(task_function)
    def wrapper(*args, **kwargs) -> str:
        sent = None if args or kwargs else _beat_window(job)
        if sent is None:
            return task_function(*args, **kwargs)
        return run_in_window(job, window_start(*sent), task_function)

    return wrapper
