import socket
import time
from collections import defaultdict

import psutil
import pytest

from monitoring.collectors import collect_system_metrics, disk_mountpoints, loopback_interfaces
from monitoring.ingest import SampleIn

DOCUMENTED = {
    "cpu_usage_percent",
    "memory_usage_percent",
    "disk_usage_percent",
    "disk_free_percent",
    "load_average_1m",
    "load_average_5m",
    "load_average_15m",
    "network_bytes_sent_total",
    "network_bytes_received_total",
}


@pytest.fixture(scope="module")
def reading() -> list[SampleIn]:
    return collect_system_metrics(now=1_764_000_000.0)


def _by_metric(samples: list[SampleIn]) -> dict[str, list[SampleIn]]:
    grouped = defaultdict(list)
    for sample in samples:
        grouped[sample.metric].append(sample)
    return grouped


def test_collector_produces_every_documented_metric_and_nothing_else(reading):
    assert set(_by_metric(reading)) == DOCUMENTED


def test_every_sample_has_the_host_label_and_one_timestamp(reading):
    assert {sample.labels["host"] for sample in reading} == {socket.gethostname()}
    assert {sample.timestamp for sample in reading} == {1_764_000_000.0}
    assert all(isinstance(sample.value, float) for sample in reading)


def test_host_label_can_be_given():
    samples = collect_system_metrics(host="gateway-7")

    assert {sample.labels["host"] for sample in samples} == {"gateway-7"}
    assert abs(samples[0].timestamp - time.time()) < 5


def test_percentages_are_between_0_and_100(reading):
    grouped = _by_metric(reading)
    for metric in ("cpu_usage_percent", "memory_usage_percent", "disk_usage_percent", "disk_free_percent"):
        assert grouped[metric], metric
        assert all(0.0 <= sample.value <= 100.0 for sample in grouped[metric]), metric
    # Something is always in use on a running machine.
    assert grouped["memory_usage_percent"][0].value > 0


def test_disks_are_per_real_mountpoint_with_usage_and_free_not_exceeding_100(reading):
    grouped = _by_metric(reading)
    usage = {sample.labels["mountpoint"]: sample.value for sample in grouped["disk_usage_percent"]}
    free = {sample.labels["mountpoint"]: sample.value for sample in grouped["disk_free_percent"]}

    assert "/" in usage
    assert set(usage) == set(free)
    for mountpoint in usage:
        assert usage[mountpoint] + free[mountpoint] <= 100.0 + 1e-6
        assert usage[mountpoint] == pytest.approx(psutil.disk_usage(mountpoint).percent, abs=1.0)
    pseudo = {p.mountpoint for p in psutil.disk_partitions(all=True) if p.fstype in {"proc", "sysfs", "tmpfs"}}
    assert not pseudo & set(usage)
    assert set(usage) <= set(disk_mountpoints())


def test_load_averages_match_the_os(reading):
    grouped = _by_metric(reading)
    expected = psutil.getloadavg()
    for window, value in zip(("1m", "5m", "15m"), expected, strict=True):
        (sample,) = grouped[f"load_average_{window}"]
        assert sample.value >= 0
        assert sample.value == pytest.approx(value, abs=2.0)
        assert set(sample.labels) == {"host"}


def test_network_counters_are_per_interface_without_loopback(reading):
    grouped = _by_metric(reading)
    sent = {sample.labels["interface"]: sample.value for sample in grouped["network_bytes_sent_total"]}
    received = {sample.labels["interface"]: sample.value for sample in grouped["network_bytes_received_total"]}
    counters = psutil.net_io_counters(pernic=True)

    assert set(sent) == set(received) == set(counters) - loopback_interfaces()
    assert "lo" not in sent
    for interface, value in sent.items():
        assert 0 <= value <= counters[interface].bytes_sent  # counters only grow


def test_cpu_usage_reflects_a_busy_core():
    collect_system_metrics()  # primes psutil's CPU reading for this thread
    deadline = time.perf_counter() + 0.5
    while time.perf_counter() < deadline:
        pass
    (cpu,) = [sample for sample in collect_system_metrics() if sample.metric == "cpu_usage_percent"]

    # One core spun for the whole interval: at least a share of one core, minus noise.
    assert cpu.value >= 100 / psutil.cpu_count() * 0.5


@pytest.mark.django_db
def test_the_beat_task_stores_the_reading(settings):
    from monitoring.models import Series
    from monitoring.tasks import collect_system_metrics_task

    settings.MONITORING_HOSTNAME = "collector-test"

    summary = collect_system_metrics_task.apply().get()

    stored = Series.objects.filter(labels__host="collector-test")
    assert set(stored.values_list("name", flat=True)) == DOCUMENTED
    assert summary == f"system metrics: {stored.count()} stored, 0 rejected"
    memory = stored.get(name="memory_usage_percent")
    assert 0 < memory.last_value <= 100
