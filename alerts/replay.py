"""Rule replay: run a rule through the engine over a scenario file (the format of
alert-scenario-format.md) or over stored history, and compare with expected timelines."""

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitoring.instant import sample_history
from monitoring.promql.alerting import evaluate_expr_over, expr_of_key, is_expr_key

from .choices import AlertState
from .engine import COMPARISONS, AlertStatus, InstantValue, RuleSpec, Transition, evaluate

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STALE = "stale"
ENCODED_FLOATS = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}
DEFAULT_LOOKBACK_S = 300


class ScenarioError(ValueError):
    """A malformed scenario: `path` is the JSON path of the first problem."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class SeriesHistory:
    """One series' samples in time order; a value of None is a staleness marker."""

    labels: Mapping[str, str]
    times: tuple[float, ...]  # seconds
    values: tuple[float | None, ...]

    def value_at(self, t: float, lookback_s: float) -> float | None:
        """The latest sample in [t - lookback, t], None when there is none or it is a
        staleness marker (the series is absent)."""
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0 or self.times[i] < t - lookback_s:
            return None
        return self.values[i]


@dataclass(frozen=True)
class Scenario:
    rule: RuleSpec
    series: tuple[SeriesHistory, ...]  # of the rule's metric only
    eval_interval_s: int
    lookback_s: int
    end_s: int
    expected: tuple[tuple[int, frozenset[frozenset[tuple[str, str]]]], ...] | None

    def eval_times(self) -> list[int]:
        return list(range(0, self.end_s + 1, self.eval_interval_s))


@dataclass(frozen=True)
class Step:
    """The alerts after one evaluation."""

    t: float
    firing: tuple[Mapping[str, str], ...]
    pending: tuple[Mapping[str, str], ...]
    transitions: tuple[Transition, ...]


def replay(
    rule: RuleSpec, series: Iterable[SeriesHistory], times: Iterable[float], *, lookback_s: float, epoch: datetime
) -> list[Step]:
    """Evaluate `rule` at each of `times` (seconds after `epoch`), carrying the alerts from
    one evaluation to the next exactly as the evaluation service does. No state before the
    first time."""
    series = list(series)

    def values_at(t: float) -> list[InstantValue]:
        values = []
        for history in series:
            value = history.value_at(t, lookback_s)
            if value is not None:
                values.append(InstantValue(history.labels, value))
        return values

    return replay_values(rule, ((t, values_at(t)) for t in times), epoch=epoch)


def replay_values(
    rule: RuleSpec, values_by_time: Iterable[tuple[float, Sequence[InstantValue]]], *, epoch: datetime
) -> list[Step]:
    """The engine run over given instant values: at each (t, values), in order, with the
    alerts carried from one evaluation to the next. No state before the first time."""
    open_alerts: Iterable[AlertStatus] = ()
    steps = []
    for t, values in values_by_time:
        outcome = evaluate(rule, values, open_alerts, epoch + timedelta(seconds=t))
        open_alerts = outcome.alerts.values()
        steps.append(
            Step(
                t=t,
                firing=_sorted_labels(a.labels for a in open_alerts if a.is_firing),
                pending=_sorted_labels(a.labels for a in open_alerts if a.state == AlertState.PENDING),
                transitions=outcome.transitions,
            )
        )
    return steps


def replay_scenario(scenario: Scenario) -> list[Step]:
    return replay(scenario.rule, scenario.series, scenario.eval_times(), lookback_s=scenario.lookback_s, epoch=EPOCH)


def replay_stored_history(
    rule: RuleSpec, *, start: datetime, end: datetime, interval_s: float, lookback_s: float = DEFAULT_LOOKBACK_S
) -> list[Step]:
    """Replay `rule` over the stored samples, evaluating every `interval_s` from `start` to
    `end`. Step times are epoch seconds. A PromQL rule's expression is evaluated at every
    step by the query engine (its selectors read once for the whole period), a metric rule's
    series are read from the sample table. Raises PromQLError when an expression cannot be
    evaluated on the stored data (many-to-many matching, too many samples)."""
    first = (start - EPOCH).total_seconds()
    count = int((end - start).total_seconds() // interval_s) + 1
    times = [first + i * interval_s for i in range(count)]
    if is_expr_key(rule.metric):
        results = evaluate_expr_over(expr_of_key(rule.metric), [round(t * 1000) for t in times])
        values = [[InstantValue(labels, value) for labels, value in result] for result in results]
        return replay_values(rule, zip(times, values, strict=True), epoch=EPOCH)
    histories = [
        SeriesHistory(
            labels,
            tuple(ts / 1000 for ts, _ in points),
            tuple(value for _, value in points),
        )
        for labels, points in sample_history(rule.metric, start - timedelta(seconds=lookback_s), end, rule.matchers)
    ]
    return replay(rule, histories, times, lookback_s=lookback_s, epoch=EPOCH)


def timeline_document(steps: Sequence[Step]) -> dict[str, Any]:
    """The output of `test_rule --scenario`: one entry per evaluation time."""
    return {
        "timeline": [
            {
                "t": _json_time(step.t),
                "firing": [dict(a) for a in step.firing],
                "pending": [dict(a) for a in step.pending],
            }
            for step in steps
        ]
    }


def compare_with_expected(scenario: Scenario, steps: Sequence[Step]) -> list[str]:
    """The differences between the replay's firing sets and `expected`, one readable line
    per missing or extra alert; empty when they agree."""
    by_time = {step.t: step for step in steps}
    problems = []
    for t, expected in scenario.expected or ():
        actual = {frozenset(labels.items()) for labels in by_time[t].firing}
        for labels in sorted(expected - actual, key=_label_key):
            problems.append(f"t={t}: expected firing {_show(labels)}, but it is not firing")
        for labels in sorted(actual - expected, key=_label_key):
            problems.append(f"t={t}: unexpected firing {_show(labels)}")
    return problems


# --- Parsing -------------------------------------------------------------------------------


def parse_scenario(document: Any) -> Scenario:
    """Check a decoded scenario document and build the Scenario; raises ScenarioError with
    the JSON path and reason of the first problem."""
    root = _object(document, "$")
    eval_interval_s = _integer(_required(root, "eval_interval_s", "$"), "$.eval_interval_s", minimum=1)
    lookback_s = _integer(root.get("lookback_s", DEFAULT_LOOKBACK_S), "$.lookback_s", minimum=0)
    end_s = _integer(_required(root, "end_s", "$"), "$.end_s", minimum=0)
    rule = _parse_rule(_object(_required(root, "rule", "$"), "$.rule"))
    series = _parse_series(_array(_required(root, "series", "$"), "$.series"), rule)
    eval_times = set(range(0, end_s + 1, eval_interval_s))
    expected = None
    if "expected" in root:
        expected = _parse_expected(_array(root["expected"], "$.expected"), eval_times, eval_interval_s, end_s)
    return Scenario(rule, series, eval_interval_s, lookback_s, end_s, expected)


def _parse_rule(raw: Mapping[str, Any]) -> RuleSpec:
    metric = _required(raw, "metric", "$.rule")
    if not isinstance(metric, str) or not metric:
        raise ScenarioError("$.rule.metric", "must be a non-empty string")
    comparison = _required(raw, "comparison", "$.rule")
    if comparison not in COMPARISONS:
        raise ScenarioError("$.rule.comparison", f"must be one of {' '.join(COMPARISONS)}, not {comparison!r}")
    severity = raw.get("severity", "")
    if not isinstance(severity, str):
        raise ScenarioError("$.rule.severity", "must be a string")
    return RuleSpec(
        metric=metric,
        comparison=comparison,
        threshold=_float(_required(raw, "threshold", "$.rule"), "$.rule.threshold"),
        duration_s=_seconds(raw.get("duration_s", 0), "$.rule.duration_s"),
        severity=severity,
        matchers=_labels(raw.get("matchers", {}), "$.rule.matchers"),
        labels=_labels(raw.get("labels", {}), "$.rule.labels"),
        resolve_after_s=_seconds(raw.get("resolve_after_s", 0), "$.rule.resolve_after_s"),
    )


def _parse_series(raw: list[Any], rule: RuleSpec) -> tuple[SeriesHistory, ...]:
    parsed = []
    seen: dict[frozenset[tuple[str, str]], int] = {}
    for i, item in enumerate(raw):
        path = f"$.series[{i}]"
        entry = _object(item, path)
        metric = _required(entry, "metric", path)
        if not isinstance(metric, str) or not metric:
            raise ScenarioError(f"{path}.metric", "must be a non-empty string")
        labels = _labels(entry.get("labels", {}), f"{path}.labels")
        identity = frozenset(labels.items()) | {("__name__", metric)}
        if identity in seen:
            raise ScenarioError(f"{path}.labels", f"the same metric and labels as $.series[{seen[identity]}]")
        seen[identity] = i
        times: list[int] = []
        values: list[float | None] = []
        for j, sample in enumerate(_array(_required(entry, "samples", path), f"{path}.samples")):
            sample_path = f"{path}.samples[{j}]"
            if not isinstance(sample, list) or len(sample) != 2:
                raise ScenarioError(sample_path, "must be a [time, value] pair")
            t = _integer(sample[0], f"{sample_path}[0]", minimum=0)
            if times and t <= times[-1]:
                raise ScenarioError(f"{sample_path}[0]", f"times must increase, {t} follows {times[-1]}")
            times.append(t)
            values.append(None if sample[1] == STALE else _float(sample[1], f"{sample_path}[1]", stale=True))
        if metric == rule.metric:  # series of another metric never match
            parsed.append(SeriesHistory(labels, tuple(times), tuple(values)))
    return tuple(parsed)


def _parse_expected(
    raw: list[Any], eval_times: set[int], eval_interval_s: int, end_s: int
) -> tuple[tuple[int, frozenset[frozenset[tuple[str, str]]]], ...]:
    entries = []
    seen: set[int] = set()
    for i, item in enumerate(raw):
        path = f"$.expected[{i}]"
        entry = _object(item, path)
        t = _integer(_required(entry, "t", path), f"{path}.t", minimum=0)
        if t not in eval_times:
            raise ScenarioError(
                f"{path}.t", f"{t} is not an evaluation time (multiples of {eval_interval_s} up to {end_s})"
            )
        if t in seen:
            raise ScenarioError(f"{path}.t", f"time {t} is listed twice")
        seen.add(t)
        firing = _array(_required(entry, "firing", path), f"{path}.firing")
        alerts = frozenset(frozenset(_labels(labels, f"{path}.firing[{j}]").items()) for j, labels in enumerate(firing))
        entries.append((t, alerts))
    return tuple(entries)


def _required(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise ScenarioError(f"{path}.{key}", "is required")
    return obj[key]


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(path, f"must be an object, not {_json_type(value)}")
    return value


def _array(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ScenarioError(path, f"must be an array, not {_json_type(value)}")
    return value


def _integer(value: Any, path: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(path, f"must be an integer, not {_json_type(value)}")
    if value < minimum:
        raise ScenarioError(path, f"must be at least {minimum}, not {value}")
    return value


def _seconds(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(path, f"must be a number of seconds, not {_json_type(value)}")
    if value < 0:
        raise ScenarioError(path, f"must not be negative, not {value}")
    return float(value)


def _float(value: Any, path: str, *, stale: bool = False) -> float:
    if isinstance(value, str) and value in ENCODED_FLOATS:
        return ENCODED_FLOATS[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        allowed = ', "NaN", "+Inf", "-Inf"' + (' or "stale"' if stale else "")
        raise ScenarioError(path, f"must be a number{allowed}, not {_json_type(value)}")
    return float(value)


def _labels(value: Any, path: str) -> dict[str, str]:
    labels = _object(value, path)
    for name, label_value in labels.items():
        if not isinstance(label_value, str):
            raise ScenarioError(f"{path}.{name}", f"label values must be strings, not {_json_type(label_value)}")
    return labels


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _sorted_labels(labels: Iterable[Mapping[str, str]]) -> tuple[Mapping[str, str], ...]:
    return tuple(sorted(labels, key=lambda item: _label_key(item.items())))


def _label_key(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(items)


def _show(labels: Iterable[tuple[str, str]]) -> str:
    return "{" + ", ".join(f'{name}="{value}"' for name, value in sorted(labels)) + "}"


def _json_time(t: float) -> int | float:
    return int(t) if float(t).is_integer() else t
