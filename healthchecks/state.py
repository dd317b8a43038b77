"""The state machine of a check: consecutive failures and successes against its thresholds
decide when it goes down and up again. Pure: no ORM, no clock."""

from dataclasses import dataclass

from .choices import UP_STATUSES, HealthStatus


@dataclass(frozen=True)
class CheckState:
    status: HealthStatus
    consecutive_failures: int = 0
    consecutive_successes: int = 0


def next_state(
    state: CheckState, result: HealthStatus, *, failure_threshold: int, success_threshold: int
) -> CheckState:
    """Decide a check's state after one more result.

    A critical result is a failure, healthy and warning are successes, unknown is neither
    (it changes nothing). The check goes down after `failure_threshold` failures in a row
    and comes up after `success_threshold` successes in a row; while it is up, healthy and
    warning follow each other at once (both mean the service answers)."""
    if result == HealthStatus.UNKNOWN:
        return state
    if result == HealthStatus.CRITICAL:
        failures = state.consecutive_failures + 1
        status = HealthStatus.CRITICAL if failures >= max(1, failure_threshold) else state.status
        return CheckState(status, failures, 0)
    successes = state.consecutive_successes + 1
    if state.status in UP_STATUSES or successes >= max(1, success_threshold):
        return CheckState(result, 0, successes)
    return CheckState(state.status, 0, successes)


def service_up(status: HealthStatus | str) -> float | None:
    """The `service_up` value of a check's state: 1 up, 0 down, None while unknown (no sample)."""
    if status in UP_STATUSES:
        return 1.0
    if status == HealthStatus.CRITICAL:
        return 0.0
    return None
