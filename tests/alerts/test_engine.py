"""The alert engine's decision tables (no database): comparisons, NaN and infinities,
durations against the evaluation interval, absent series, flapping, several series per
rule, resolve_after and the per-rule evaluation interval."""

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from alerts.choices import AlertState
from alerts.engine import (
    AlertStatus,
    Evaluation,
    InstantValue,
    RuleSpec,
    RuleSpecError,
    alert_labels,
    evaluate,
    is_due,
    label_fingerprint,
    labels_match,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NAN, INF = math.nan, math.inf
PENDING, ACTIVE, RESOLVED, DROPPED = AlertState.PENDING, AlertState.ACTIVE, AlertState.RESOLVED, AlertState.INACTIVE
ACKNOWLEDGED = AlertState.ACKNOWLEDGED


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rule(comparison: str = ">", threshold: float = 80.0, **options: object) -> RuleSpec:
    return RuleSpec(metric="cpu", comparison=comparison, threshold=threshold, severity="high", **options)


def run(spec: RuleSpec, steps: Iterable[tuple[float, dict[str, float | None]]]) -> list[Evaluation]:
    """Evaluate at each (t, {host: value}) in turn, carrying the open alerts along; a value
    of None is an absent series."""
    open_alerts: Iterable[AlertStatus] = ()
    outcomes = []
    for t, values in steps:
        instants = [InstantValue({"host": host}, value) for host, value in values.items() if value is not None]
        outcome = evaluate(spec, instants, open_alerts, at(t))
        open_alerts = outcome.alerts.values()
        outcomes.append(outcome)
    return outcomes


def states(outcome: Evaluation) -> dict[str, AlertState]:
    return {status.labels["host"]: status.state for status in outcome.alerts.values()}


def moves(outcome: Evaluation) -> list[tuple[str, AlertState | None, AlertState]]:
    return [(t.labels["host"], t.from_state, t.to_state) for t in outcome.transitions]


# --- Comparisons ---------------------------------------------------------------------------

# (comparison, value, holds) with threshold 80: below, at and above it for every operator.
COMPARISON_TABLE = [
    (">", 79, False), (">", 80, False), (">", 81, True),
    ("<", 79, True), ("<", 80, False), ("<", 81, False),
    (">=", 79, False), (">=", 80, True), (">=", 81, True),
    ("<=", 79, True), ("<=", 80, True), ("<=", 81, False),
    ("==", 79, False), ("==", 80, True), ("==", 81, False),
    ("!=", 79, True), ("!=", 80, False), ("!=", 81, True),
    # NaN: every comparison is false except != (Prometheus, IEEE 754).
    (">", NAN, False), ("<", NAN, False), (">=", NAN, False), ("<=", NAN, False), ("==", NAN, False), ("!=", NAN, True),
    # Infinities order like numbers.
    (">", INF, True), ("<", INF, False), (">=", INF, True), ("<=", INF, False), ("==", INF, False), ("!=", INF, True),
    (">", -INF, False), ("<", -INF, True), (">=", -INF, False), ("<=", -INF, True), ("==", -INF, False),
    ("!=", -INF, True),
]  # fmt: skip


@pytest.mark.parametrize(("comparison", "value", "holds"), COMPARISON_TABLE)
def test_comparison_against_threshold(comparison: str, value: float, holds: bool) -> None:
    [outcome] = run(rule(comparison, 80.0), [(0, {"a": value})])
    assert moves(outcome) == ([("a", None, ACTIVE)] if holds else [])


# (comparison, value, threshold, holds) for thresholds that are NaN or infinite.
SPECIAL_THRESHOLD_TABLE = [
    ("==", 1.0, NAN, False), ("!=", 1.0, NAN, True), ("<", 1.0, NAN, False), ("!=", NAN, NAN, True),
    ("==", NAN, NAN, False), ("==", INF, INF, True), (">=", INF, INF, True), (">", INF, INF, False),
    ("<", 1e308, INF, True), (">", -INF, -INF, False), ("<=", -INF, -INF, True),
]  # fmt: skip


@pytest.mark.parametrize(("comparison", "value", "threshold", "holds"), SPECIAL_THRESHOLD_TABLE)
def test_comparison_with_nan_or_infinite_threshold(
    comparison: str, value: float, threshold: float, holds: bool
) -> None:
    [outcome] = run(rule(comparison, threshold), [(0, {"a": value})])
    assert (states(outcome) == {"a": ACTIVE}) is holds


def test_firing_alert_resolves_when_value_turns_nan() -> None:
    outcomes = run(rule(">", 80.0), [(0, {"a": 90}), (60, {"a": NAN})])
    assert moves(outcomes[1]) == [("a", ACTIVE, RESOLVED)]
    assert math.isnan(outcomes[1].transitions[0].value)


# --- Durations -----------------------------------------------------------------------------


# Evaluated every 60 s with the condition true from t=0: when does the alert fire?
@pytest.mark.parametrize(
    ("duration_s", "fires_at"),
    [
        (0, 0),  # duration 0 fires at the first true evaluation
        (30, 60),  # shorter than the interval: the next evaluation
        (60, 60),  # equal: held for exactly `duration` at the next evaluation
        (61, 120),  # a second longer: one more evaluation
        (90, 120),
        (300, 300),
    ],
)
def test_pending_alert_fires_after_duration(duration_s: int, fires_at: int) -> None:
    times = range(0, 421, 60)
    outcomes = run(rule(duration_s=duration_s), [(t, {"a": 95}) for t in times])
    for t, outcome in zip(times, outcomes, strict=True):
        assert states(outcome) == {"a": ACTIVE if t >= fires_at else PENDING}, t
    fired = [(t, move) for t, outcome in zip(times, outcomes, strict=True) for move in moves(outcome)]
    expected = (
        [(0, ("a", None, ACTIVE))] if fires_at == 0 else [(0, ("a", None, PENDING)), (fires_at, ("a", PENDING, ACTIVE))]
    )
    assert fired == expected


def test_pending_alert_keeps_its_start_and_fires_with_the_current_value() -> None:
    outcomes = run(rule(duration_s=120), [(0, {"a": 81}), (60, {"a": 82}), (120, {"a": 83})])
    assert outcomes[1].alerts[label_fingerprint({"host": "a"})].pending_since == at(0)
    [fired] = outcomes[2].transitions
    assert (fired.to_state, fired.value, fired.at) == (ACTIVE, 83, at(120))
    assert outcomes[2].alerts[fired.fingerprint].fired_at == at(120)


def test_pending_alert_dropped_when_condition_fails_once() -> None:
    outcomes = run(rule(duration_s=120), [(0, {"a": 90}), (60, {"a": 70}), (120, {"a": 90}), (180, {"a": 90})])
    assert moves(outcomes[1]) == [("a", PENDING, DROPPED)]
    # The next true evaluation starts a new pending alert whose wait starts over.
    assert moves(outcomes[2]) == [("a", None, PENDING)]
    assert states(outcomes[3]) == {"a": PENDING}


def test_flapping_condition_never_fires_a_rule_with_a_duration() -> None:
    values = [90, 70] * 5
    outcomes = run(rule(duration_s=60), [(i * 30, {"a": value}) for i, value in enumerate(values)])
    assert all(status.state == PENDING for o in outcomes for status in o.alerts.values())
    assert [m for o in outcomes for m in moves(o)] == [("a", None, PENDING), ("a", PENDING, DROPPED)] * 5


def test_flapping_condition_with_duration_zero_fires_and_resolves_each_time() -> None:
    outcomes = run(rule(), [(i * 30, {"a": value}) for i, value in enumerate([90, 70, 90, 70])])
    assert [m for o in outcomes for m in moves(o)] == [
        ("a", None, ACTIVE), ("a", ACTIVE, RESOLVED), ("a", None, ACTIVE), ("a", ACTIVE, RESOLVED),
    ]  # fmt: skip


# --- Absent series -------------------------------------------------------------------------


def test_absent_series_resolves_firing_alert_and_returns_as_a_new_one() -> None:
    # The caller leaves out a series with no sample within the lookback (or after a
    # staleness marker): None here.
    outcomes = run(rule(duration_s=60), [(0, {"a": 90}), (60, {"a": 90}), (120, {"a": None}), (180, {"a": 90})])
    assert moves(outcomes[1]) == [("a", PENDING, ACTIVE)]
    assert moves(outcomes[2]) == [("a", ACTIVE, RESOLVED)]
    assert outcomes[2].transitions[0].value is None
    assert outcomes[2].alerts == {}
    assert moves(outcomes[3]) == [("a", None, PENDING)]


def test_absent_series_drops_pending_alert() -> None:
    outcomes = run(rule(duration_s=300), [(0, {"a": 90}), (60, {})])
    assert moves(outcomes[1]) == [("a", PENDING, DROPPED)]


# --- Several series, labels and matchers ---------------------------------------------------


def test_one_alert_per_series_each_with_its_own_timeline() -> None:
    outcomes = run(
        rule("<", 1.0, duration_s=60),
        [
            (0, {"a": 1, "b": 1, "c": 0}),
            (30, {"a": 0, "b": 1, "c": 0}),
            (60, {"a": 0, "b": 0, "c": 0}),
            (90, {"a": 0, "b": 0, "c": 1}),
            (120, {"a": 1, "b": 0, "c": 1}),
        ],
    )
    assert [states(o) for o in outcomes] == [
        {"c": PENDING},
        {"a": PENDING, "c": PENDING},
        {"a": PENDING, "b": PENDING, "c": ACTIVE},
        {"a": ACTIVE, "b": PENDING},
        {"b": ACTIVE},
    ]
    assert sorted(moves(outcomes[4])) == [("a", ACTIVE, RESOLVED), ("b", PENDING, ACTIVE)]


def test_alert_labels_are_series_labels_plus_rule_labels_and_severity() -> None:
    spec = rule(labels={"team": "iot", "host": "overridden"})
    assert alert_labels(spec, {"host": "a", "env": "prod"}) == {
        "host": "overridden",
        "env": "prod",
        "team": "iot",
        "severity": "high",
    }
    [outcome] = run(spec, [(0, {"a": 90})])
    [status] = outcome.alerts.values()
    assert status.labels["team"] == "iot" and status.fingerprint == label_fingerprint({"host": "a"})


def test_fingerprint_given_by_the_caller_identifies_the_alert() -> None:
    # The evaluation service computes each series' fingerprint once for all rules.
    given = InstantValue({"host": "a"}, 99.0, fingerprint="f" * 32)
    outcome = evaluate(rule(), [given], (), T0)
    assert list(outcome.alerts) == ["f" * 32] and outcome.transitions[0].fingerprint == "f" * 32


def test_fingerprint_ignores_label_order() -> None:
    assert label_fingerprint({"a": "1", "b": "2"}) == label_fingerprint({"b": "2", "a": "1"})
    assert label_fingerprint({"a": "1"}) != label_fingerprint({"a": "2"})
    assert len(label_fingerprint({})) == 32


@pytest.mark.parametrize(
    ("matchers", "labels", "matches"),
    [
        ({}, {"env": "prod"}, True),
        ({"env": "prod"}, {"env": "prod", "host": "a"}, True),
        ({"env": "prod"}, {"env": "dev"}, False),
        ({"env": "prod"}, {}, False),
        ({"env": ""}, {"host": "a"}, True),  # an empty matcher value matches a missing label
        ({"env": ""}, {"env": "prod"}, False),
        ({"env": "prod", "host": "a"}, {"env": "prod", "host": "b"}, False),
    ],
)
def test_label_matchers(matchers: dict[str, str], labels: dict[str, str], matches: bool) -> None:
    assert labels_match(matchers, labels) is matches
    outcome = evaluate(rule(matchers=matchers), [InstantValue(labels, 99.0)], (), T0)
    assert len(outcome.alerts) == (1 if matches else 0)


# --- resolve_after (hysteresis) ------------------------------------------------------------


def test_resolve_after_keeps_alert_firing_through_a_short_dip() -> None:
    outcomes = run(
        rule(resolve_after_s=120),
        [(0, {"a": 90}), (60, {"a": 70}), (120, {"a": 90}), (180, {"a": 70}), (240, {"a": None}), (300, {"a": 70})],
    )
    assert [moves(o) for o in outcomes[1:5]] == [[], [], [], []]
    fp = label_fingerprint({"host": "a"})
    assert outcomes[1].alerts[fp].false_since == at(60)
    assert outcomes[2].alerts[fp].false_since is None  # true again: the countdown starts over
    assert outcomes[4].alerts[fp].false_since == at(180)  # absent counts as not true
    # Not true since 180, for 120 s at 300: resolves.
    assert moves(outcomes[5]) == [("a", ACTIVE, RESOLVED)]


def test_resolve_after_off_by_default_resolves_at_first_false() -> None:
    outcomes = run(rule(), [(0, {"a": 90}), (60, {"a": 70})])
    assert moves(outcomes[1]) == [("a", ACTIVE, RESOLVED)]


def test_resolve_after_does_not_hold_pending_alerts() -> None:
    outcomes = run(rule(duration_s=120, resolve_after_s=600), [(0, {"a": 90}), (60, {"a": 70})])
    assert moves(outcomes[1]) == [("a", PENDING, DROPPED)]


# --- Acknowledged alerts -------------------------------------------------------------------


def test_acknowledged_alert_stays_acknowledged_then_resolves() -> None:
    fp = label_fingerprint({"host": "a"})
    acked = AlertStatus(fp, {"host": "a"}, ACKNOWLEDGED, at(0), fired_at=at(0))
    still = evaluate(rule(), [InstantValue({"host": "a"}, 95.0)], [acked], at(60))
    assert still.transitions == () and still.alerts[fp].state == ACKNOWLEDGED and still.alerts[fp].value == 95.0
    cleared = evaluate(rule(), [InstantValue({"host": "a"}, 50.0)], [acked], at(60))
    assert moves(cleared) == [("a", ACKNOWLEDGED, RESOLVED)]


def test_manually_resolved_alert_whose_condition_holds_starts_a_new_pending_alert() -> None:
    # A resolved alert is no longer open, so it is not among the previous states.
    outcome = evaluate(rule(duration_s=60), [InstantValue({"host": "a"}, 95.0)], [], at(120))
    assert moves(outcome) == [("a", None, PENDING)]
    assert outcome.alerts[label_fingerprint({"host": "a"})].pending_since == at(120)


# --- Rule validation and the per-rule interval ---------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{"comparison": "=>"}, {"duration_s": -1}, {"resolve_after_s": -5}, {"evaluation_interval_s": 0}],
)
def test_rule_spec_refuses_what_it_cannot_evaluate(options: dict[str, object]) -> None:
    fields = {"metric": "cpu", "comparison": ">", "threshold": 1.0} | options
    with pytest.raises(RuleSpecError):
        RuleSpec(**fields)


@pytest.mark.parametrize(
    ("interval_s", "last_s", "now_s", "due"),
    [
        (None, None, 0, True),  # never evaluated
        (None, 0, 60, True),  # the global interval (60) elapsed
        (None, 0, 45, True),  # within half a beat tick: a tick arriving a moment early
        (None, 0, 29, False),
        (300, 0, 60, False),  # its own, longer interval
        (300, 0, 270, True),
        (300, 0, 240, False),
    ],
)
def test_is_due_respects_per_rule_interval(interval_s: int | None, last_s: int | None, now_s: int, due: bool) -> None:
    spec = rule(evaluation_interval_s=interval_s)
    last = None if last_s is None else at(last_s)
    assert is_due(spec, last_evaluated_at=last, now=at(now_s), default_interval_s=60, slack_s=30) is due
