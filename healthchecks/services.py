"""Health check services: claiming due checks, running them, and recording what they found
(result rows, the check's state and streaks, metrics, live updates) together."""

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from .checkers import CheckOutcome, CheckSpec, RunOptions, judge_heartbeat, run_checks
from .choices import CheckKind, HealthStatus, PingKind
from .models import HealthCheck, HealthCheckResult
from .scheduling import batches, due_filter, next_due_at, unclaimed_filter
from .state import CheckState, next_state, service_up

log = logging.getLogger("healthchecks")

HEARTBEAT_BODY_LIMIT = 10_000  # characters of a ping's body kept with its result
_STATE_FIELDS = (
    "status",
    "consecutive_failures",
    "consecutive_successes",
    "last_checked_at",
    "next_due_at",
    "running_since",
    "claim_token",
    "last_result",
)


@dataclass(frozen=True)
class StateChange:
    check_id: int
    key: str
    name: str
    target: str
    previous: str
    status: str
    message: str
    checked_at: datetime

    def payload(self) -> dict:
        return {
            "check_id": self.check_id,
            "key": self.key,
            "name": self.name,
            "target": self.target,
            "previous_status": self.previous,
            "status": self.status,
            "message": self.message,
            "checked_at": self.checked_at.isoformat(),
        }


@dataclass(frozen=True)
class DispatchSummary:
    claimed: int
    tasks: int
    released: int = 0

    def line(self) -> str:
        text = f"dispatched {self.claimed} due check(s) in {self.tasks} batch(es)"
        return text + (f", {self.released} released (broker unavailable)" if self.released else "")


@dataclass(frozen=True)
class QueuedBatch:
    task_id: str
    check_ids: tuple[int, ...]


@dataclass
class RunReport:
    """What an on-demand run did: results of the checks that finished in time, the task of
    each batch left to a worker, and why any requested check was not run."""

    results: list[HealthCheckResult] = field(default_factory=list)
    queued: list[QueuedBatch] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def run_options(*, spread: float | None = None) -> RunOptions:
    return RunOptions(
        concurrency=settings.HEALTHCHECK_CONCURRENCY,
        spread=settings.HEALTHCHECK_JITTER_SECONDS if spread is None else spread,
        output_limit=settings.HEALTHCHECK_OUTPUT_LIMIT,
        ping_method=settings.HEALTHCHECK_PING_METHOD,
    )


def spec_for(check: HealthCheck) -> CheckSpec:
    target = check.target if check.target_id else None
    return CheckSpec(
        id=check.pk,
        kind=check.kind,
        key=check.key,
        timeout=check.effective_timeout,
        config=dict(check.config or {}),
        endpoint=target.endpoint if target else "",
        created_at=check.created_at,
        period=float(check.period),
        grace=float(check.grace),
        last_ping_at=check.last_ping_at,
        last_ping_kind=check.last_ping_kind,
        last_start_at=check.last_start_at,
    )


# --- claims -------------------------------------------------------------------------------------


def claim_checks(*, condition: Q, now: datetime, ids: Iterable[int] | None = None, limit: int | None = None):
    """Claim the checks matching `condition` (and `ids`) by one conditional UPDATE that sets
    running_since and a fresh claim token; returns (token, claimed ids). A check claimed by
    someone else in between no longer matches the condition, so it is never claimed twice."""
    token = uuid.uuid4()
    candidates = HealthCheck.objects.filter(condition)
    if ids is not None:
        candidates = candidates.filter(pk__in=list(ids))
    candidate_ids = list(
        candidates.order_by(F("next_due_at").asc(nulls_first=True), "pk").values_list("pk", flat=True)[:limit]
    )
    if not candidate_ids:
        return token, []
    HealthCheck.objects.filter(condition, pk__in=candidate_ids).update(running_since=now, claim_token=token)
    claimed = list(HealthCheck.objects.filter(claim_token=token).order_by("pk").values_list("pk", flat=True))
    return token, claimed


def take_over_claim(*, claim_token: uuid.UUID | str, check_ids: Sequence[int], now: datetime) -> uuid.UUID:
    """Move the claim on `check_ids` from the dispatcher's token to a new one of this runner.
    A duplicate task (a redelivered message, a second tick) finds the token gone and runs nothing."""
    mine = uuid.uuid4()
    HealthCheck.objects.filter(pk__in=list(check_ids), claim_token=claim_token).update(
        claim_token=mine, running_since=now
    )
    return mine


def release_claims(*, claim_token: uuid.UUID | str, check_ids: Sequence[int] | None = None) -> int:
    rows = HealthCheck.objects.filter(claim_token=claim_token)
    if check_ids is not None:
        rows = rows.filter(pk__in=list(check_ids))
    return rows.update(running_since=None, claim_token=None)


def queue_check_batch(claim_token: uuid.UUID, check_ids: list[int]) -> str:
    from .tasks import run_checks_task  # tasks import this module

    options = {"queue": settings.HEALTHCHECK_QUEUE} if settings.HEALTHCHECK_QUEUE else {}
    result = run_checks_task.apply_async(kwargs={"claim_token": str(claim_token), "check_ids": check_ids}, **options)
    return result.id


def dispatch_due_checks(*, now: datetime) -> DispatchSummary:
    """Claim the checks that are due and hand them to workers in batches (one task each).
    A batch that cannot be queued is released for the next tick."""
    token, claimed = claim_checks(
        condition=due_filter(now, claim_timeout=settings.HEALTHCHECK_CLAIM_TIMEOUT),
        now=now,
        limit=settings.HEALTHCHECK_MAX_PER_TICK,
    )
    tasks = released = 0
    for batch in batches(claimed, settings.HEALTHCHECK_BATCH_SIZE):
        try:
            queue_check_batch(token, batch)
            tasks += 1
        except (BrokerError, RedisError, OSError) as exc:
            released += release_claims(claim_token=token, check_ids=batch)
            log.warning("a batch of %d checks was not queued, broker unavailable: %s", len(batch), exc)
    return DispatchSummary(claimed=len(claimed), tasks=tasks, released=released)


# --- running and recording -------------------------------------------------------------------------


def run_claimed_checks(
    *, claim_token: uuid.UUID | str, check_ids: Sequence[int], now: datetime | None = None, spread: float | None = None
) -> list[HealthCheckResult]:
    """Run the checks of a batch that are still claimed by `claim_token`, and record them."""
    now = now or timezone.now()
    mine = take_over_claim(claim_token=claim_token, check_ids=check_ids, now=now)
    checks = list(HealthCheck.objects.filter(claim_token=mine).select_related("target").order_by("pk"))
    if not checks:
        return []
    outcomes = run_checks([spec_for(check) for check in checks], now, run_options(spread=spread))
    return record_outcomes(outcomes=outcomes, claim_token=mine)


def run_checks_now(
    *, check_ids: Sequence[int] | None, now: datetime | None = None, wait_seconds: float | None = None
) -> RunReport:
    """Run checks on demand (all enabled ones, or `check_ids`). Those whose timeout lets them
    finish within `wait_seconds` run here, one concurrent wave of them; the rest go to the
    workers and the report names their tasks. A check already running is not run again."""
    now = now or timezone.now()
    wait_seconds = settings.HEALTHCHECK_RUN_REQUEST_TIMEOUT if wait_seconds is None else wait_seconds
    report = RunReport()
    rows = HealthCheck.objects.all() if check_ids is None else HealthCheck.objects.filter(pk__in=list(check_ids))
    enabled = dict(rows.values_list("pk", "enabled"))
    for check_id in check_ids or ():
        if check_id not in enabled:
            report.skipped[check_id] = "no such check"
        elif not enabled[check_id]:
            report.skipped[check_id] = "disabled"
    wanted = [pk for pk, on in enabled.items() if on]
    condition = Q(enabled=True) & unclaimed_filter(now, claim_timeout=settings.HEALTHCHECK_CLAIM_TIMEOUT)
    token, claimed = claim_checks(condition=condition, now=now, ids=wanted)
    for check_id in sorted(set(wanted) - set(claimed)):
        report.skipped[check_id] = "already running"
    checks = list(HealthCheck.objects.filter(claim_token=token).select_related("target").order_by("pk"))
    fits = [c for c in checks if c.effective_timeout + 1 <= wait_seconds][: settings.HEALTHCHECK_CONCURRENCY]
    inline_ids = {c.pk for c in fits}
    later = [c.pk for c in checks if c.pk not in inline_ids]
    for batch in batches(later, settings.HEALTHCHECK_BATCH_SIZE):
        try:
            report.queued.append(QueuedBatch(queue_check_batch(token, batch), tuple(batch)))
        except (BrokerError, RedisError, OSError) as exc:
            release_claims(claim_token=token, check_ids=batch)
            for check_id in batch:
                report.skipped[check_id] = f"not queued, broker unavailable: {exc.__class__.__name__}"
    if fits:
        report.results = run_claimed_checks(claim_token=token, check_ids=sorted(inline_ids), now=now, spread=0.0)
    return report


def record_outcomes(
    *, outcomes: Sequence[CheckOutcome], claim_token: uuid.UUID | None = None
) -> list[HealthCheckResult]:
    """Store the outcomes as results, move each check's streaks and state, release the claim
    held by `claim_token`, publish state changes after commit, then ingest the metrics."""
    by_id = {outcome.check_id: outcome for outcome in outcomes}
    changes: list[StateChange] = []
    results: list[HealthCheckResult] = []
    checks: list[HealthCheck] = []
    with transaction.atomic():
        # of=("self",): PostgreSQL cannot lock the nullable side of the join to the target.
        locked = HealthCheck.objects.select_for_update(of=("self",)).select_related("target").filter(pk__in=by_id)
        for check in locked.order_by("pk"):
            outcome = by_id[check.pk]
            if check.kind == CheckKind.HEARTBEAT:
                # Judge again on the locked row: a ping may have arrived while the batch ran.
                when = max(outcome.checked_at, check.last_ping_at or outcome.checked_at)
                outcome = heartbeat_outcome(check, when, dict(outcome.details))
            checks.append(check)
            results.append(
                HealthCheckResult(
                    health_check=check,
                    status=outcome.status,
                    response_time=outcome.response_time,
                    message=outcome.message,
                    details=outcome.details,
                    checked_at=outcome.checked_at,
                )
            )
        results = HealthCheckResult.objects.bulk_create(results, batch_size=500)
        for check, result in zip(checks, results, strict=True):
            before = CheckState(HealthStatus(check.status), check.consecutive_failures, check.consecutive_successes)
            after = next_state(
                before,
                HealthStatus(result.status),
                failure_threshold=check.failure_threshold,
                success_threshold=check.success_threshold,
            )
            check.status = after.status
            check.consecutive_failures = after.consecutive_failures
            check.consecutive_successes = after.consecutive_successes
            check.last_checked_at = result.checked_at
            check.next_due_at = next_due_at(checked_at=result.checked_at, interval=check.interval)
            check.last_result = result
            if claim_token is not None and check.claim_token == claim_token:
                check.running_since = None
                check.claim_token = None
            if after.status != before.status:
                changes.append(
                    StateChange(
                        check_id=check.pk,
                        key=check.key,
                        name=check.name,
                        target=check.target.slug if check.target_id else "",
                        previous=before.status,
                        status=after.status,
                        message=result.message,
                        checked_at=result.checked_at,
                    )
                )
        _write_states(checks)
        if changes:
            transaction.on_commit(partial(publish_state_changes, changes))
    if claim_token is not None:
        # Checks that vanished while running (deleted) need no release; any other leftover does.
        release_claims(claim_token=claim_token)
    ingest_result_metrics(checks, results)
    return results


def _write_states(checks: Sequence[HealthCheck]) -> None:
    """Write the state fields of `checks`, one parameterised UPDATE per row in one
    executemany: Django's bulk_update builds a CASE expression per field and row, which
    costs seconds of Python for a batch of a few hundred checks."""
    if not checks:
        return
    meta = HealthCheck._meta
    fields = [meta.get_field(name) for name in _STATE_FIELDS]
    assignments = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
    # Names come from the model, never from input; values are parameters.
    sql = f"UPDATE {connection.ops.quote_name(meta.db_table)} SET {assignments} WHERE id = %s"  # noqa: S608
    rows = [[f.get_db_prep_save(f.value_from_object(c), connection) for f in fields] + [c.pk] for c in checks]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def heartbeat_outcome(check: HealthCheck, now: datetime, details: dict | None = None) -> CheckOutcome:
    judged = judge_heartbeat(spec_for(check), now)
    return CheckOutcome(
        check_id=check.pk,
        status=judged.status,
        message=judged.message,
        response_time=None,
        details={**(details or {}), **judged.details},
        checked_at=now,
    )


def publish_state_changes(changes: Sequence[StateChange]) -> None:
    """One live-update event per recorded batch, listing every check whose state changed
    (a fleet-wide outage is one message, not thousands)."""
    from dashboard.publish import GROUP_HEALTH, publish

    publish(GROUP_HEALTH, "health.state_changed", {"changes": [change.payload() for change in changes]})


def result_samples(check: HealthCheck, result: HealthCheckResult) -> list:
    """The metric samples of one result: `service_up` from the check's state (after its
    thresholds), the response time, and the kind's own figures."""
    from monitoring.ingest import SampleIn

    labels = {"target": check.target.slug if check.target_id else "", "check": check.key}
    ts = result.checked_at.timestamp()
    samples = []
    up = service_up(check.status)
    if up is not None:
        samples.append(SampleIn("service_up", labels, up, ts))
    if result.response_time is not None:
        samples.append(SampleIn("service_response_time_seconds", labels, float(result.response_time), ts))
    details = result.details or {}
    if check.kind == CheckKind.TLS_CERTIFICATE and isinstance(details.get("expiry_days"), (int, float)):
        samples.append(SampleIn("tls_certificate_expiry_days", labels, float(details["expiry_days"]), ts))
    if check.kind == CheckKind.PING and isinstance(details.get("packet_loss_ratio"), (int, float)):
        samples.append(SampleIn("ping_packet_loss_ratio", labels, float(details["packet_loss_ratio"]), ts))
    if check.kind == CheckKind.HTTP and isinstance(details.get("status_code"), int):
        samples.append(SampleIn("http_response_status_code", labels, float(details["status_code"]), ts))
    return samples


def ingest_result_metrics(checks: Sequence[HealthCheck], results: Sequence[HealthCheckResult]) -> None:
    from monitoring.ingest import ingest_samples

    samples = []
    for check, result in zip(checks, results, strict=True):
        samples.extend(result_samples(check, result))
    if samples:
        ingest_samples(samples, now=timezone.now())


# --- heartbeats -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PingReceipt:
    check: HealthCheck
    kind: str
    result: HealthCheckResult | None  # None when the ping changed nothing worth a result


def record_ping(*, ping_uuid: uuid.UUID | str, kind: PingKind, now: datetime, body: str = "") -> PingReceipt | None:
    """Record a heartbeat ping. A failure ping records a result at once; a success ping does
    when the check is not healthy or its last result is older than its interval (a chatty
    device costs one row per interval, not one per ping); a start ping only marks the start.
    Returns None for an unknown uuid."""
    details: dict = {"ping": kind.value}
    if body:
        details["body"] = body[:HEARTBEAT_BODY_LIMIT]
    with transaction.atomic():
        check = (
            HealthCheck.objects.select_for_update(of=("self",))
            .select_related("target")
            .filter(ping_uuid=ping_uuid, kind=CheckKind.HEARTBEAT)
            .first()
        )
        if check is None:
            return None
        if kind == PingKind.START:
            check.last_start_at = now
            check.save(update_fields=["last_start_at"])
            return PingReceipt(check, kind, None)
        if (
            kind == PingKind.SUCCESS
            and check.last_start_at
            and (check.last_ping_at is None or check.last_start_at > check.last_ping_at)
        ):
            details["run_seconds"] = round((now - check.last_start_at).total_seconds(), 3)
        check.last_ping_at = now
        check.last_ping_kind = kind
        check.save(update_fields=["last_ping_at", "last_ping_kind"])
        stale = check.last_checked_at is None or now - check.last_checked_at >= timedelta(seconds=check.interval)
        worth_a_result = check.enabled and (kind == PingKind.FAIL or check.status != HealthStatus.HEALTHY or stale)
    if not worth_a_result:
        return PingReceipt(check, kind, None)
    results = record_outcomes(outcomes=[heartbeat_outcome(check, now, details)])
    check.refresh_from_db()
    return PingReceipt(check, kind, results[0] if results else None)
