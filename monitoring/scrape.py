"""Prometheus scrape: fetch the exposition of each `prometheus` target, parse it with
prometheus_client's text parser and hand the samples, with the target's labels and the
`up`/`scrape_duration_seconds`/`scrape_samples_scraped` series Prometheus adds, to ingestion."""

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from . import outbound
from .choices import TargetKind
from .ingest import IngestResult, SampleIn, ingest_samples
from .models import MonitoringTarget
from .redis import redis_client

log = logging.getLogger("scrape")

# What Prometheus 2.x asks for: the classic text format, which every exporter serves.
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
USER_AGENT = "iot-monitoring-scraper/1.0"
MAX_BODY_BYTES = 64 * 1024 * 1024
# A claimed target is due again this much before its interval ends, so a beat tick that
# runs a little late does not skip a whole interval.
CLAIM_SLACK_MS = 2000


class ScrapeError(Exception):
    """A scrape that produced no samples: timeout, HTTP error, bad body."""


@dataclass(frozen=True)
class ScrapeTarget:
    id: int
    url: str
    timeout: float  # seconds, for the whole scrape
    labels: Mapping[str, str]  # job, instance and the target's own labels


@dataclass(frozen=True)
class ScrapeResult:
    target: ScrapeTarget
    timestamp: float  # epoch seconds the scrape started: the time of samples without one
    duration: float  # seconds
    samples: tuple[SampleIn, ...] = ()
    error: str | None = None

    @property
    def up(self) -> bool:
        return self.error is None

    def report_samples(self) -> list[SampleIn]:
        """The series Prometheus records about every scrape, with the target's labels."""
        labels = dict(self.target.labels)
        return [
            SampleIn("up", labels, 1.0 if self.up else 0.0, self.timestamp),
            SampleIn("scrape_duration_seconds", labels, self.duration, self.timestamp),
            SampleIn("scrape_samples_scraped", labels, float(len(self.samples)), self.timestamp),
        ]

    def all_samples(self) -> list[SampleIn]:
        return [*self.samples, *self.report_samples()]


def target_labels(target: MonitoringTarget) -> dict[str, str]:
    """The labels of every sample of `target`, as Prometheus makes them: `job` (the
    target's slug) and `instance` (host:port of its URL), which the target's own labels
    may override."""
    parts = urlsplit(target.endpoint)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, "")
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address, bracketed as in a URL
        host = f"[{host}]"
    instance = f"{host}:{port}" if port else host
    return {"job": target.slug, "instance": instance, **{str(k): str(v) for k, v in target.labels.items()}}


def scrape_target_of(target: MonitoringTarget) -> ScrapeTarget:
    return ScrapeTarget(id=target.pk, url=target.endpoint, timeout=float(target.timeout), labels=target_labels(target))


def merge_labels(scraped: Mapping[str, str], target: Mapping[str, str]) -> dict[str, str]:
    """Prometheus's `honor_labels: false`: the target's labels win; a scraped label that a
    target label also names is kept as `exported_<name>` (prefixed again until the name is
    free among the scraped, target and already renamed labels, shortest names first)."""
    merged = {name: value for name, value in scraped.items() if name not in target}
    merged.update(target)
    taken = set(scraped) | set(target)
    for name in sorted((name for name in scraped if name in target), key=len):
        renamed = f"exported_{name}"
        while renamed in taken:
            renamed = f"exported_{renamed}"
        taken.add(renamed)
        merged[renamed] = scraped[name]
    return merged


def parse_exposition(text: str, *, labels: Mapping[str, str], timestamp: float) -> list[SampleIn]:
    """Every sample of a text exposition (counters, gauges, histogram buckets/sums/counts,
    summary quantiles, untyped), with `labels` merged in. The exporter's own timestamp is
    kept; a sample without one gets `timestamp`. Raises ValueError for a malformed body:
    like Prometheus, one bad line fails the whole scrape."""
    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.append(
                SampleIn(
                    metric=sample.name,
                    labels=merge_labels(sample.labels, labels),
                    value=float(sample.value),
                    timestamp=float(sample.timestamp) if sample.timestamp is not None else timestamp,
                )
            )
    return samples


async def _fetch(client: httpx.AsyncClient, target: ScrapeTarget) -> str:
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": f"{target.timeout:g}"}
    async with client.stream("GET", target.url, headers=headers, timeout=target.timeout) as response:
        if response.status_code != 200:
            raise ScrapeError(f"HTTP {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise ScrapeError(f"body larger than {MAX_BODY_BYTES} bytes")
        return body.decode(response.encoding or "utf-8")


async def _scrape(client: httpx.AsyncClient, target: ScrapeTarget, slots: asyncio.Semaphore) -> ScrapeResult:
    async with slots:
        started_at = time.time()
        started = time.perf_counter()
        try:
            # httpx's timeout bounds each read; this bounds the whole scrape, so an
            # exporter that trickles a byte at a time cannot hold the round.
            async with asyncio.timeout(target.timeout):
                text = await _fetch(client, target)
            samples = parse_exposition(text, labels=target.labels, timestamp=started_at)
        except (TimeoutError, httpx.TimeoutException):
            error = f"timed out after {target.timeout:g} s"
        except (ScrapeError, outbound.OutboundDenied) as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{exc.__class__.__name__}: {exc}"
        except (ValueError, IndexError, KeyError) as exc:
            # prometheus_client's parser raises these for a body that is not an exposition.
            error = f"invalid exposition: {exc}"
        else:
            return ScrapeResult(target, started_at, time.perf_counter() - started, tuple(samples))
        log.warning("scrape of %s failed: %s", target.url, error)
        return ScrapeResult(target, started_at, time.perf_counter() - started, error=error)


async def _scrape_all(targets: Sequence[ScrapeTarget], concurrency: int) -> list[ScrapeResult]:
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    headers = {"Accept": ACCEPT, "User-Agent": USER_AGENT}
    # Under the outbound policy (MONITORING_OUTBOUND_DENY/ALLOW), redirects included.
    async with outbound.httpx_async_client(limits=limits, headers=headers, follow_redirects=True) as client:
        return list(await asyncio.gather(*(_scrape(client, target, slots) for target in targets)))


def scrape_targets(targets: Sequence[ScrapeTarget], *, concurrency: int | None = None) -> list[ScrapeResult]:
    """Scrape `targets` at most `concurrency` at a time; each result says up or why not.
    A failing target never affects another."""
    if not targets:
        return []
    return asyncio.run(_scrape_all(targets, concurrency or settings.MONITORING_SCRAPE_CONCURRENCY))


@dataclass(frozen=True)
class ScrapeRound:
    targets: int
    up: int
    accepted: int
    rejected: int
    errors: Mapping[int, str] = field(default_factory=dict)  # target id -> why it is down

    def summary(self) -> str:
        return (
            f"scraped {self.targets} targets ({self.up} up): {self.accepted} samples stored, {self.rejected} rejected"
        )


def scrape_and_ingest(target_ids: Iterable[int]) -> ScrapeRound:
    """Scrape the enabled `prometheus` targets among `target_ids` and ingest each one's
    samples (and its up/duration/count) as one batch."""
    targets = [
        scrape_target_of(target)
        for target in MonitoringTarget.objects.filter(pk__in=list(target_ids), kind=TargetKind.PROMETHEUS, enabled=True)
    ]
    results = scrape_targets(targets)
    accepted = rejected = 0
    for result in results:
        outcome: IngestResult = ingest_samples(result.all_samples())
        accepted += outcome.accepted
        rejected += len(outcome.rejected)
    errors = {result.target.id: result.error for result in results if result.error}
    return ScrapeRound(len(results), len(results) - len(errors), accepted, rejected, errors)


def _claim_key(target_id: int) -> str:
    return f"monitoring:scrape-claim:{target_id}"


def claim_due_targets() -> list[int]:
    """Claim the enabled `prometheus` targets whose interval has passed since their last
    claim. A claim is a Redis key that lives for the target's interval (SET NX PX), so two
    overlapping rounds, or two beat processes, never scrape a target twice per interval."""
    targets = list(
        MonitoringTarget.objects.filter(kind=TargetKind.PROMETHEUS, enabled=True)
        .exclude(endpoint="")
        .values_list("pk", "check_interval")
    )
    if not targets:
        return []
    pipeline = redis_client().pipeline(transaction=False)
    for target_id, interval in targets:
        interval_ms = max(interval, 1) * 1000
        pipeline.set(_claim_key(target_id), "1", nx=True, px=max(interval_ms - CLAIM_SLACK_MS, interval_ms // 2))
    return [target_id for (target_id, _), claimed in zip(targets, pipeline.execute(), strict=True) if claimed]


def release_claims(target_ids: Iterable[int]) -> None:
    """Make targets due at once (after their interval was edited, or in tests)."""
    keys = [_claim_key(target_id) for target_id in target_ids]
    if keys:
        redis_client().delete(*keys)


def dispatch_due_scrapes(send: Callable[[list[int]], object], *, batch_size: int | None = None) -> int:
    """Claim the due targets and hand them to `send` in batches (one Celery task each, so a
    large fleet spreads over the workers). Returns how many were due."""
    due = claim_due_targets()
    size = batch_size or settings.MONITORING_SCRAPE_BATCH_SIZE
    for start in range(0, len(due), size):
        send(due[start : start + size])
    return len(due)
