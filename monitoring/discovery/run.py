"""One discovery round, as beat and `manage.py discover` run it: file_sd and http_sd
listings, the network scan (at most every MONITORING_DISCOVERY_SCAN_INTERVAL unless forced)
and the fleet metrics of the device targets."""

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.cache import cache

from ..choices import DiscoverySource
from .devices import ingest_fleet_metrics
from .network import parse_hosts, parse_ports, scan
from .sd import SdListing, fetch_http_sd, read_file_sd
from .services import SyncReport, propose, sync_listing

log = logging.getLogger("discovery")

SCAN_CLAIM_KEY = "discovery:network-scan"
ALL_SOURCES = tuple(DiscoverySource)


@dataclass
class DiscoveryReport:
    """What a round did, per source, as short phrases."""

    lines: dict[str, str] = field(default_factory=dict)
    proposed: list[int] = field(default_factory=list)
    approved: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, source: str, text: str, sync: SyncReport | None = None) -> None:
        if sync is not None:
            self.proposed += sync.proposed
            self.approved += sync.approved
            text += f", {len(sync.proposed)} new, {len(sync.approved)} auto-approved"
            if sync.withdrawn or sync.missing:
                text += f", {sync.withdrawn} withdrawn, {sync.missing} no longer listed"
        self.lines[source] = text

    def line(self) -> str:
        return "; ".join(f"{source}: {text}" for source, text in self.lines.items()) or "nothing configured"


def _sync_sd(report: DiscoveryReport, source: DiscoverySource, listing: SdListing, now: datetime) -> None:
    report.errors += listing.errors
    text = f"{len(listing.findings)} listed" + (f", {len(listing.errors)} unreadable" if listing.errors else "")
    if not listing.changed:
        report.add(source.value, text + ", unchanged")
        return
    # An unreadable file or URL says nothing about its targets: keep them rather than
    # withdrawing them until it reads again.
    sync = sync_listing(source, listing.findings, now=now) if listing.complete else propose(listing.findings, now=now)
    report.add(source.value, text, sync)


def run_discovery(
    *,
    now: datetime,
    sources: Collection[str] = ALL_SOURCES,
    force_scan: bool = False,
    networks: Sequence[str] | None = None,
    ports: Sequence[str] | None = None,
) -> DiscoveryReport:
    """Run the configured discovery sources once. `networks`/`ports` replace the settings'
    ranges for this round (the command's --network/--ports)."""
    report = DiscoveryReport()
    if DiscoverySource.FILE_SD in sources and settings.MONITORING_DISCOVERY_FILE_SD:
        _sync_sd(report, DiscoverySource.FILE_SD, read_file_sd(settings.MONITORING_DISCOVERY_FILE_SD), now)
    if DiscoverySource.HTTP_SD in sources and settings.MONITORING_DISCOVERY_HTTP_SD:
        _sync_sd(report, DiscoverySource.HTTP_SD, fetch_http_sd(settings.MONITORING_DISCOVERY_HTTP_SD), now)
    networks = list(networks) if networks is not None else settings.MONITORING_DISCOVERY_NETWORKS
    if DiscoverySource.NETWORK in sources and networks:
        interval = settings.MONITORING_DISCOVERY_SCAN_INTERVAL
        # One scan per interval across every worker: the claim lives as long as the interval.
        if force_scan or (interval > 0 and cache.add(SCAN_CLAIM_KEY, now.isoformat(), timeout=interval)):
            hosts = parse_hosts(networks)
            port_list = parse_ports(ports if ports is not None else settings.MONITORING_DISCOVERY_PORTS)
            result = scan(
                hosts,
                port_list,
                concurrency=settings.MONITORING_DISCOVERY_CONCURRENCY,
                rate=settings.MONITORING_DISCOVERY_RATE,
                timeout=settings.MONITORING_DISCOVERY_CONNECT_TIMEOUT,
            )
            sync = propose([open_port.finding() for open_port in result.open_ports], now=now)
            text = f"{result.attempted} probed in {result.seconds:.1f} s, {len(result.open_ports)} open"
            if result.denied:
                text += f", {result.denied} refused by the outbound policy"
            report.add(DiscoverySource.NETWORK.value, text, sync)
        else:
            report.add(DiscoverySource.NETWORK.value, "not due")
    # Off with device discovery: a device platform may push the same metrics itself.
    if DiscoverySource.DEVICE in sources and settings.MONITORING_DISCOVERY_DEVICES:
        result = ingest_fleet_metrics(now=now)
        report.add(DiscoverySource.DEVICE.value, f"fleet metrics: {result.accepted} samples")
    log.info("discovery: %s", report.line())
    return report
