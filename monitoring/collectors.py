"""The system collector: this host's CPU, memory, disks, load and network read with psutil,
as samples for the one ingestion path (metric names in docs/metrics.md)."""

import socket
import threading
import time

import psutil

from .ingest import SampleIn

# psutil measures CPU use between two calls; the first call of a thread has nothing to
# compare with, so it samples for this long instead of reporting a meaningless 0.
CPU_FIRST_SAMPLE_SECONDS = 0.5
# Filesystems that hold no user data, or are read-only images (snaps), or are views of
# another filesystem: a usage alert on them is noise.
PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs",
        "efivarfs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "overlay", "proc", "pstore",
        "ramfs", "rpc_pipefs", "securityfs", "squashfs", "sysfs", "tmpfs", "tracefs",
    }
)  # fmt: skip

_primed = threading.local()


def cpu_usage_percent() -> float:
    """CPU use of the whole host since this thread's previous call (a collection interval),
    in percent of all CPUs."""
    if not getattr(_primed, "cpu", False):
        _primed.cpu = True
        return psutil.cpu_percent(interval=CPU_FIRST_SAMPLE_SECONDS)
    return psutil.cpu_percent(interval=None)


def disk_mountpoints() -> list[str]:
    """Mount points of real filesystems, one per device. `/` is always included: in a
    container it is an overlay, which is still where the service writes."""
    seen_devices: set[str] = set()
    mountpoints: list[str] = []
    for partition in psutil.disk_partitions(all=False):
        if partition.fstype in PSEUDO_FILESYSTEMS or partition.device in seen_devices:
            continue  # a bind mount shows the same device again
        seen_devices.add(partition.device)
        mountpoints.append(partition.mountpoint)
    if "/" not in mountpoints:
        mountpoints.insert(0, "/")
    return mountpoints


def loopback_interfaces() -> set[str]:
    """Interfaces flagged loopback: their traffic never leaves the host."""
    return {name for name, stats in psutil.net_if_stats().items() if "loopback" in stats.flags.split(",")} | {"lo"}


def collect_system_metrics(*, host: str | None = None, now: float | None = None) -> list[SampleIn]:
    """One reading of this host's system metrics, all with the same timestamp and a
    `host` label. A disk that disappears between listing and reading is skipped."""
    host = host or socket.gethostname()
    now = time.time() if now is None else now
    base = {"host": host}

    def sample(metric: str, value: float, **labels: str) -> SampleIn:
        return SampleIn(metric=metric, labels={**base, **labels}, value=float(value), timestamp=now)

    samples = [
        sample("cpu_usage_percent", cpu_usage_percent()),
        sample("memory_usage_percent", psutil.virtual_memory().percent),
    ]
    for mountpoint in disk_mountpoints():
        try:
            usage = psutil.disk_usage(mountpoint)
        except OSError:  # unmounted or unreadable since it was listed
            continue
        if usage.total == 0:
            continue
        samples.append(sample("disk_usage_percent", usage.percent, mountpoint=mountpoint))
        # What an unprivileged process can still write, like df's "Avail": usage and
        # free do not add up to 100 when the filesystem reserves blocks for root.
        samples.append(sample("disk_free_percent", usage.free / usage.total * 100, mountpoint=mountpoint))
    for window, load in zip(("1m", "5m", "15m"), psutil.getloadavg(), strict=True):
        samples.append(sample(f"load_average_{window}", load))
    loopbacks = loopback_interfaces()
    for interface, counters in sorted(psutil.net_io_counters(pernic=True).items()):
        if interface in loopbacks:
            continue
        samples.append(sample("network_bytes_sent_total", counters.bytes_sent, interface=interface))
        samples.append(sample("network_bytes_received_total", counters.bytes_recv, interface=interface))
    return samples
