"""Celery shells around the monitoring core's periodic work."""

from datetime import UTC

from celery import shared_task
from django.utils import timezone

from .periodic import once_per_window
from .watchdog import connect_worker_signals

connect_worker_signals()  # a worker imports this module: it starts its own watchdog thread when ready


@shared_task(ignore_result=True)
@once_per_window
def cleanup_task() -> str:
    """Remove what is older than the global retention (beat, every cleanup_interval)."""
    from .retention import run_cleanup

    return run_cleanup(now=timezone.now()).line()


@shared_task(ignore_result=True)
@once_per_window
def maintain_partitions_task() -> str:
    """Create the daily sample partitions of the retention window and the days ahead
    (PostgreSQL; nothing to do on SQLite)."""
    from .models import GlobalSettings
    from .storage import maintain_partitions

    created = maintain_partitions(
        today=timezone.now().astimezone(UTC).date(), retention_days=GlobalSettings.load().retention_days
    )
    return f"created {len(created)} sample partitions" + (f": {', '.join(created)}" if created else "")


@shared_task(ignore_result=True)
@once_per_window
def collect_system_metrics_task() -> str:
    """Read this host's CPU, memory, disks, load and network and ingest them (beat, every
    collection_interval)."""
    from django.conf import settings

    from .collectors import collect_system_metrics
    from .ingest import ingest_samples

    result = ingest_samples(collect_system_metrics(host=settings.MONITORING_HOSTNAME or None))
    return f"system metrics: {result.accepted} stored, {len(result.rejected)} rejected"


@shared_task(ignore_result=True)
@once_per_window
def scrape_targets_task() -> str:
    """Claim the Prometheus targets whose interval has passed and hand them to
    scrape_target_batch_task in batches (beat)."""
    from .scrape import dispatch_due_scrapes

    due = dispatch_due_scrapes(lambda target_ids: scrape_target_batch_task.delay(target_ids))
    return f"{due} prometheus targets due"


@shared_task(ignore_result=True)
def scrape_target_batch_task(target_ids: list[int]) -> str:
    """Scrape a batch of Prometheus targets concurrently and ingest what each returned."""
    from .scrape import scrape_and_ingest

    return scrape_and_ingest(target_ids).summary()


@shared_task(ignore_result=True)
@once_per_window
def discover_targets_task() -> str:
    """Re-read file_sd/http_sd, scan the configured networks when their interval has passed,
    and ingest the device fleet metrics (beat, every collection_interval)."""
    from .discovery.run import run_discovery

    return run_discovery(now=timezone.now()).line()


@shared_task(ignore_result=True)
@once_per_window
def watch_pipeline_task(beat_tick: bool = True) -> str:
    """Read the pipeline's figures, store them, evaluate the built-in watchdog rules and call
    the dead-man URL after a healthy round (beat, every sweep_interval: the run itself is
    beat's tick)."""
    from .watchdog import run_watchdog_round

    return run_watchdog_round(now=timezone.now(), beat_tick=beat_tick).line()
