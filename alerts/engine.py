"""The alert rule engine: for one rule at one evaluation time, which alerts go pending, fire,
resolve or drop. Pure: frozen dataclasses in and out, `now` is a parameter, no database.
The semantics are those of Prometheus alerting rules (DESIGN.md, "Alert semantics")."""

import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from .choices import FIRING_STATES, AlertState

# Comparisons on floats. Python's float operators follow IEEE 754 exactly as Go's do in
# Prometheus: every comparison with NaN is false except `!=`, and +Inf/-Inf order normally.
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class RuleSpecError(ValueError):
    """A rule the engine cannot evaluate (unknown comparison, negative duration)."""


@dataclass(frozen=True)
class RuleSpec:
    """What the engine needs of a rule. Durations in seconds; 0 turns an option off."""

    metric: str
    comparison: str
    threshold: float
    duration_s: float = 0.0
    severity: str = ""
    matchers: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)  # added to every alert's labels
    resolve_after_s: float = 0.0
    evaluation_interval_s: float | None = None  # None: the global interval

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise RuleSpecError(f"unknown comparison {self.comparison!r}, expected one of {' '.join(COMPARISONS)}")
        for name in ("duration_s", "resolve_after_s"):
            if getattr(self, name) < 0:
                raise RuleSpecError(f"{name} must not be negative")
        if self.evaluation_interval_s is not None and self.evaluation_interval_s <= 0:
            raise RuleSpecError("evaluation_interval_s must be positive")


@dataclass(frozen=True)
class InstantValue:
    """One series' value at the evaluation time: its latest sample within the lookback.
    The caller leaves out series without one (absent). `fingerprint` may be given when the
    caller evaluates many rules over the same series, to compute it once."""

    labels: Mapping[str, str]
    value: float
    fingerprint: str = ""


@dataclass(frozen=True)
class AlertStatus:
    """An open alert as the engine sees it: pending, or firing (active or acknowledged)."""

    fingerprint: str
    labels: Mapping[str, str]
    state: AlertState
    pending_since: datetime
    fired_at: datetime | None = None
    last_true_at: datetime | None = None
    false_since: datetime | None = None  # for resolve_after: the first evaluation it was not true
    value: float | None = None

    @property
    def is_firing(self) -> bool:
        return self.state in FIRING_STATES


@dataclass(frozen=True)
class Transition:
    """A change of one alert's state. `from_state` None: a new alert. `to_state` INACTIVE:
    a pending alert dropped before it fired."""

    fingerprint: str
    labels: Mapping[str, str]
    from_state: AlertState | None
    to_state: AlertState
    at: datetime
    value: float | None


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one evaluation: the transitions, in the order decided, and the alerts
    still open afterwards, by fingerprint."""

    transitions: tuple[Transition, ...]
    alerts: Mapping[str, AlertStatus]


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 32-character id of a label set (the identity of one alert of a rule)."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def labels_match(matchers: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether `labels` satisfy every exact matcher. As in Prometheus, a missing label is
    the empty string, so a matcher with an empty value matches series that lack the label."""
    # A plain loop, not all(...): this runs for every series of every rule in a round.
    for name, value in matchers.items():  # noqa: SIM110
        if labels.get(name, "") != value:
            return False
    return True


def alert_labels(rule: RuleSpec, series_labels: Mapping[str, str]) -> dict[str, str]:
    """An alert's labels: the series' labels, then the rule's extra labels and severity,
    which win on a clash (as a Prometheus rule's labels do)."""
    labels = {**series_labels, **rule.labels}
    if rule.severity:
        labels["severity"] = rule.severity
    return labels


def evaluate(
    rule: RuleSpec, values: Iterable[InstantValue], previous: Iterable[AlertStatus], now: datetime
) -> Evaluation:
    """Decide the transitions of `rule` at `now`, given the instant values of its metric
    (series of other metrics must not be passed) and the open alerts of the previous
    evaluation."""
    previous_by_fp = {status.fingerprint: status for status in previous}
    compare, threshold, matchers = COMPARISONS[rule.comparison], rule.threshold, rule.matchers
    holding: list[tuple[str, Mapping[str, str], float]] = []
    not_holding: dict[str, float] = {}  # values of open alerts' series where the condition fails
    for instant in values:
        # Label matchers select the series; one alert per (rule, series labels).
        if matchers and not labels_match(matchers, instant.labels):
            continue
        if compare(instant.value, threshold):
            holding.append((instant.fingerprint or label_fingerprint(instant.labels), instant.labels, instant.value))
        elif previous_by_fp:
            fp = instant.fingerprint or label_fingerprint(instant.labels)
            if fp in previous_by_fp:
                not_holding[fp] = instant.value

    transitions: list[Transition] = []
    alerts: dict[str, AlertStatus] = {}

    for fp, series_labels, value in holding:
        if fp in alerts:
            continue  # the same series twice: the caller's mistake, decided once
        prev = previous_by_fp.get(fp)
        if prev is None:
            labels = alert_labels(rule, series_labels)
            if rule.duration_s == 0:
                # Duration 0: the alert fires at the first evaluation at which the condition holds.
                status = AlertStatus(fp, labels, AlertState.ACTIVE, now, fired_at=now, last_true_at=now, value=value)
            else:
                # The condition holds for the first time: pending since now.
                status = AlertStatus(fp, labels, AlertState.PENDING, now, last_true_at=now, value=value)
            transitions.append(Transition(fp, labels, None, status.state, now, value))
        elif prev.state == AlertState.PENDING:
            if (now - prev.pending_since).total_seconds() >= rule.duration_s:
                # Held at every evaluation (any false one dropped it) for at least `duration`
                # since the first true one: it fires.
                status = replace(prev, state=AlertState.ACTIVE, fired_at=now, last_true_at=now, value=value)
                transitions.append(Transition(fp, prev.labels, prev.state, AlertState.ACTIVE, now, value))
            else:
                # Held, but not yet for `duration`: still pending.
                status = replace(prev, last_true_at=now, value=value)
        else:
            # Firing and still true: keeps firing (acknowledged stays acknowledged); a
            # resolve_after countdown that had started begins again next time it is false.
            status = replace(prev, last_true_at=now, false_since=None, value=value)
        alerts[fp] = status

    for fp, prev in previous_by_fp.items():
        if fp in alerts:
            continue
        # The condition is false, or the series is absent (no sample within the lookback,
        # or a staleness marker): both count as "not true", as in Prometheus.
        value = not_holding.get(fp)
        if prev.state == AlertState.PENDING:
            # A pending alert is dropped at the first evaluation that is not true.
            transitions.append(Transition(fp, prev.labels, prev.state, AlertState.INACTIVE, now, value))
            continue
        if rule.resolve_after_s > 0:
            false_since = prev.false_since or now
            if (now - false_since).total_seconds() < rule.resolve_after_s:
                # Hysteresis: a firing alert resolves only once the condition has not been
                # true for `resolve_after` (Prometheus' keep_firing_for).
                alerts[fp] = replace(prev, false_since=false_since, value=prev.value if value is None else value)
                continue
        # A firing alert resolves at the first evaluation that is not true (or at the end
        # of its resolve_after period).
        transitions.append(Transition(fp, prev.labels, prev.state, AlertState.RESOLVED, now, value))

    return Evaluation(tuple(transitions), alerts)


def is_due(
    rule: RuleSpec, *, last_evaluated_at: datetime | None, now: datetime, default_interval_s: float, slack_s: float
) -> bool:
    """Whether a periodic evaluation of `rule` is due: its own interval (or the global one)
    has elapsed since the last evaluation, less `slack_s` so that a beat tick arriving a
    moment early does not skip a whole interval."""
    if last_evaluated_at is None:
        return True
    interval = rule.evaluation_interval_s or default_interval_s
    return (now - last_evaluated_at).total_seconds() >= interval - slack_s
