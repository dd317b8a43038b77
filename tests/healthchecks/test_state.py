"""The threshold state machine: a table of streaks, no database."""

import pytest

from healthchecks.choices import HealthStatus
from healthchecks.state import CheckState, next_state, service_up

H, W, C, U = HealthStatus.HEALTHY, HealthStatus.WARNING, HealthStatus.CRITICAL, HealthStatus.UNKNOWN


@pytest.mark.parametrize(
    ("before", "result", "thresholds", "after"),
    [
        # failure_threshold 1 (the default): one failure takes it down.
        (CheckState(H, 0, 5), C, (1, 1), CheckState(C, 1, 0)),
        # failure_threshold 3: the first two failures only count.
        (CheckState(H, 0, 5), C, (3, 1), CheckState(H, 1, 0)),
        (CheckState(H, 1, 0), C, (3, 1), CheckState(H, 2, 0)),
        (CheckState(H, 2, 0), C, (3, 1), CheckState(C, 3, 0)),
        # A success between failures starts the count again.
        (CheckState(H, 2, 0), H, (3, 1), CheckState(H, 0, 1)),
        # success_threshold 2: down until two successes in a row.
        (CheckState(C, 4, 0), H, (1, 2), CheckState(C, 0, 1)),
        (CheckState(C, 0, 1), H, (1, 2), CheckState(H, 0, 2)),
        (CheckState(C, 0, 1), C, (1, 2), CheckState(C, 1, 0)),
        # Warning is up: it counts as a success, and while up the status follows at once.
        (CheckState(H, 0, 3), W, (1, 2), CheckState(W, 0, 4)),
        (CheckState(W, 0, 4), H, (1, 2), CheckState(H, 0, 5)),
        # From unknown (never judged) the thresholds apply as from down.
        (CheckState(U, 0, 0), H, (1, 2), CheckState(U, 0, 1)),
        (CheckState(U, 0, 0), C, (2, 1), CheckState(U, 1, 0)),
        (CheckState(U, 0, 0), H, (1, 1), CheckState(H, 0, 1)),
        # An unknown result says nothing: no change at all.
        (CheckState(C, 2, 0), U, (1, 1), CheckState(C, 2, 0)),
        (CheckState(H, 0, 2), U, (1, 1), CheckState(H, 0, 2)),
    ],
)
def test_next_state(before, result, thresholds, after):
    failure_threshold, success_threshold = thresholds
    assert next_state(before, result, failure_threshold=failure_threshold, success_threshold=success_threshold) == after


@pytest.mark.parametrize(("status", "value"), [(H, 1.0), (W, 1.0), (C, 0.0), (U, None)])
def test_service_up(status, value):
    assert service_up(status) == value
