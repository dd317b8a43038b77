"""The discovery round as beat runs it: a job of the schedule, the network scan at most once
per scan interval across workers, fleet metrics only while device discovery is on."""

import json

import pytest
from django.core.cache import cache

from monitoring.discovery import sd
from monitoring.discovery.run import SCAN_CLAIM_KEY
from monitoring.models import Series
from monitoring.schedule import PERIODIC_JOBS, is_task_registered
from monitoring.tasks import discover_targets_task

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_file_cache():
    sd._file_cache.clear()
    yield
    sd._file_cache.clear()


def test_discovery_is_a_registered_job_of_the_schedule():
    (job,) = [job for job in PERIODIC_JOBS if job.task == "monitoring.tasks.discover_targets_task"]
    assert job.interval_field == "collection_interval"
    assert is_task_registered(job.task)


def test_the_beat_task_runs_every_source_and_scans_once_per_interval(settings, tmp_path):
    path = tmp_path / "sd.json"
    path.write_text(json.dumps([{"targets": ["10.1.0.1:9100"]}]))
    settings.MONITORING_DISCOVERY_FILE_SD = [str(path)]
    settings.MONITORING_DISCOVERY_NETWORKS = ["127.0.0.1"]
    settings.MONITORING_DISCOVERY_PORTS = []  # nothing to connect to: the claim is what is tested
    settings.MONITORING_DISCOVERY_SCAN_INTERVAL = 3600

    line = discover_targets_task()
    assert "file_sd: 1 listed, 1 new, 0 auto-approved" in line
    assert "network: 0 probed" in line
    assert cache.get(SCAN_CLAIM_KEY) is not None
    assert "network: not due" in discover_targets_task()  # another worker's tick within the hour
    assert Series.objects.filter(name="device_count").count() == 3


def test_fleet_metrics_are_left_to_the_platform_when_device_discovery_is_off(settings):
    settings.MONITORING_DISCOVERY_DEVICES = False
    discover_targets_task()
    assert not Series.objects.filter(name="device_count").exists()
