"""PromQL alert rules: the instant vector of a rule's `expr` at an evaluation time, for the
alert engine (alerts.evaluation), which treats every series of it as a holding condition.
Rules are keyed by their expression, so rules with the same one evaluate it once."""

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

import numpy as np
from django.conf import settings

from monitoring.instant import epoch_ms

from .errors import PromQLError
from .evaluator import Evaluator, default_deadline
from .parser import parse_expr
from .values import Scalar, Vector, without_name

log = logging.getLogger("alerting")

# A prefix no metric name can have (names never contain a space), so an expression's key and
# a metric name never collide where the engine keeps values by metric.
EXPR_KEY_PREFIX = "promql "


def expr_key(expr: str) -> str:
    return EXPR_KEY_PREFIX + expr.strip()


def is_expr_key(key: str) -> bool:
    return key.startswith(EXPR_KEY_PREFIX)


def expr_of_key(key: str) -> str:
    return key[len(EXPR_KEY_PREFIX) :]


def evaluate_expr(expr: str, at: datetime) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of each series of `expr` at `at`, the way Prometheus feeds an
    alerting rule: the metric name is dropped from the labels, and a scalar result is one
    series without labels. Raises PromQLError (a string or range vector is an error)."""
    node = parse_expr(expr)
    steps = np.array([epoch_ms(at)], dtype=np.int64)
    value = Evaluator(steps, deadline=default_deadline(), max_samples=settings.PROMQL_MAX_SAMPLES).eval(node)
    if isinstance(value, Scalar):
        return [({}, float(value.values[0]))]
    if not isinstance(value, Vector):
        raise PromQLError(f"an alert expression must return an instant vector or a scalar, not a {node.type.value}")
    return [(without_name(item.labels), float(item.values[0])) for item in value.series if item.present[0]]


def evaluate_expr_over(expr: str, times_ms: Sequence[int]) -> list[list[tuple[dict[str, str], float]]]:
    """The result of `expr` at each of `times_ms` (epoch ms, increasing), as evaluate_expr
    gives it at one time: one list of (labels, value) per time, evaluated at all of them at
    once (each selector's samples read once), for replaying a rule over stored history."""
    node = parse_expr(expr)
    steps = np.asarray(times_ms, dtype=np.int64)
    if not len(steps):
        return []
    value = Evaluator(steps, deadline=default_deadline(), max_samples=settings.PROMQL_MAX_SAMPLES).eval(node)
    if isinstance(value, Scalar):
        return [[({}, float(v))] for v in value.values]
    if not isinstance(value, Vector):
        raise PromQLError(f"an alert expression must return an instant vector or a scalar, not a {node.type.value}")
    per_step: list[list[tuple[dict[str, str], float]]] = [[] for _ in steps]
    for item in value.series:
        labels = without_name(item.labels)
        for i in np.flatnonzero(item.present):
            per_step[i].append((labels, float(item.values[i])))
    return per_step


def evaluate_expr_keys(keys: Iterable[str], at: datetime) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The result of each expression key at `at`. A key whose expression fails (a
    many-to-many match, a timeout) is left out and logged: its rules are skipped this
    round and their alerts keep their state, as Prometheus does on a failed evaluation."""
    results = {}
    for key in keys:
        try:
            results[key] = evaluate_expr(expr_of_key(key), at)
        except PromQLError as exc:
            log.warning("PromQL rule expression %r not evaluated: %s", expr_of_key(key), exc)
    return results
