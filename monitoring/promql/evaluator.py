"""Evaluates a parsed expression at every step of a query at once. Each selector reads its
samples once for the whole query (monitoring.promql.selection); functions, aggregations
and operators then work on NumPy arrays of one value per step, with Prometheus 2.x
semantics: a 5-minute lookback for instant selectors, windows closed at both ends,
vector matching by label signatures, the same NaN and Inf rules."""

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from . import functions
from .ast import (
    Aggregation,
    Binary,
    Call,
    Cardinality,
    MatrixSelector,
    Node,
    NumberLiteral,
    Paren,
    StringLiteral,
    Unary,
    VectorMatching,
    VectorSelector,
)
from .errors import ExecutionError, QueryTimeout
from .parser import ARITHMETIC
from .selection import SeriesData, select
from .values import NAME, Matrix, Scalar, String, Value, Vector, VSeries, label_key, unique_series, without_name

LOOKBACK_MS = 5 * 60 * 1000  # how far back an instant selector looks for a sample (Prometheus' default)
DEADLINE_CHECK_EVERY = 1000  # series between deadline checks in Python loops

ARITHMETIC_OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "%": np.fmod,  # Go's math.Mod: the sign of the dividend, as C's fmod
    "^": np.power,
}
COMPARISON_OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}


def query_steps(start_ms: int, end_ms: int, step_ms: int) -> np.ndarray:
    """The evaluation times of a range query: start, start + step, ... up to end."""
    return np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)


def default_deadline() -> float:
    return time.monotonic() + settings.PROMQL_QUERY_TIMEOUT


@dataclass
class Evaluator:
    """Evaluates nodes at `steps` (epoch ms). Reads at most `max_samples` samples in all and
    raises QueryTimeout past `deadline` (time.monotonic())."""

    steps: np.ndarray
    deadline: float
    max_samples: int
    lookback_ms: int = LOOKBACK_MS

    def __post_init__(self) -> None:
        self._selected: dict[tuple, list[SeriesData]] = {}

    def check_deadline(self) -> None:
        if time.monotonic() >= self.deadline:
            raise QueryTimeout("query timed out in query execution")

    def eval(self, node: Node) -> Value:
        self.check_deadline()
        if isinstance(node, NumberLiteral):
            return Scalar(np.full(len(self.steps), node.value))
        if isinstance(node, StringLiteral):
            return String(node.value)
        if isinstance(node, Paren):
            return self.eval(node.expr)
        if isinstance(node, VectorSelector):
            return self.vector_selector(node)
        if isinstance(node, MatrixSelector):
            selector = node.selector
            return Matrix(self.fetch(selector, node.range_ms, instant=False), node.range_ms, selector.offset_ms)
        if isinstance(node, Call):
            return functions.call_function(node.func, [self.eval(arg) for arg in node.args], self.steps)
        if isinstance(node, Aggregation):
            return self.aggregate(node)
        if isinstance(node, Unary):
            return self.negate(self.eval(node.expr))
        if isinstance(node, Binary):
            return self.binary(node)
        raise AssertionError(f"no evaluation for {type(node).__name__}")

    # --- selectors -------------------------------------------------------------------------

    def fetch(self, selector: VectorSelector, window_ms: int, *, instant: bool) -> list[SeriesData]:
        """The samples of `selector` covering every step's window, read once per query (the
        same selector twice in an expression is read once)."""
        lo = int(self.steps[0]) - selector.offset_ms - window_ms
        hi = int(self.steps[-1]) - selector.offset_ms
        key = (selector.matchers, lo, hi, instant)
        if key not in self._selected:
            data = select(
                selector,
                lo,
                hi,
                deadline=self.deadline,
                limit=self.max_samples,
                latest_at=hi if instant and len(self.steps) == 1 else None,
            )
            self.max_samples -= sum(len(item.ts) for item in data)
            # Prometheus reads series in label order; aggregations add them up in that order.
            data.sort(key=lambda item: label_key(item.labels))
            self._selected[key] = data
        return self._selected[key]

    def vector_selector(self, selector: VectorSelector) -> Vector:
        """Each series' latest sample at or before each step (less the offset), if it is
        no older than the lookback; a series without one is absent at that step."""
        t_eff = self.steps - selector.offset_ms
        out = []
        for data in self.fetch(selector, self.lookback_ms, instant=True):
            latest = np.searchsorted(data.ts, t_eff, side="right") - 1
            found = latest >= 0
            latest = np.where(found, latest, 0)
            present = found & (data.ts[latest] >= t_eff - self.lookback_ms)
            if present.any():
                out.append(VSeries(data.labels, data.values[latest], present))
        return Vector(out)

    # --- operators -------------------------------------------------------------------------

    def negate(self, value: Value) -> Value:
        if isinstance(value, Scalar):
            return Scalar(-value.values)
        return Vector(unique_series([VSeries(without_name(s.labels), -s.values, s.present) for s in value.series]))

    def binary(self, node: Binary) -> Value:
        lhs = self.eval(node.lhs)
        rhs = self.eval(node.rhs)
        with np.errstate(all="ignore"):
            if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
                if node.op in ARITHMETIC:
                    return Scalar(ARITHMETIC_OPS[node.op](lhs.values, rhs.values))
                return Scalar(COMPARISON_OPS[node.op](lhs.values, rhs.values).astype(np.float64))
            if isinstance(lhs, Vector) and isinstance(rhs, Vector):
                if node.op in ("and", "or", "unless"):
                    return Vector(unique_series(set_operation(node.op, lhs, rhs, node.matching)))
                return Vector(unique_series(self.vector_binary(node, lhs, rhs)))
            if isinstance(lhs, Vector):
                return Vector(unique_series(vector_scalar(node.op, lhs, rhs.values, False, node.return_bool)))
            return Vector(unique_series(vector_scalar(node.op, rhs, lhs.values, True, node.return_bool)))

    def vector_binary(self, node: Binary, lhs: Vector, rhs: Vector) -> list[VSeries]:
        """Arithmetic or comparison between two vectors: each series of the "many" side
        (the left one, the right one for group_right) meets the series of the other side with
        the same signature (the `on` labels, or all but the `ignoring` ones and the name)."""
        matching = node.matching
        card = matching.card
        many, one = (rhs.series, lhs.series) if card is Cardinality.ONE_TO_MANY else (lhs.series, rhs.series)
        signature = signature_function(matching)
        one_by_signature: dict[tuple, list[VSeries]] = {}
        for item in one:
            one_by_signature.setdefault(signature(item.labels), []).append(item)
        for group in one_by_signature.values():
            if len(group) > 1:
                _refuse_duplicates_on_one_side(group, matching)

        out: list[VSeries] = []
        taken: dict[tuple, np.ndarray] = {}  # (signature[, result labels]) -> steps already matched
        for index, item in enumerate(many):
            if index % DEADLINE_CHECK_EVERY == 0:
                self.check_deadline()
            sig = signature(item.labels)
            for partner in one_by_signature.get(sig, ()):
                present = item.present & partner.present
                if not present.any():
                    continue
                # The operation keeps its written order: left op right.
                left, right = (partner, item) if card is Cardinality.ONE_TO_MANY else (item, partner)
                if node.op in ARITHMETIC:
                    values = ARITHMETIC_OPS[node.op](left.values, right.values)
                else:
                    keep = COMPARISON_OPS[node.op](left.values, right.values)
                    if node.return_bool:
                        values = keep.astype(np.float64)
                    else:
                        values = left.values  # a filtering comparison keeps the left side's value
                        present = present & keep
                labels = result_labels(item.labels, partner.labels, node.op, matching, node.return_bool)
                slot = sig if card is Cardinality.ONE_TO_ONE else (sig, label_key(labels))
                if slot in taken and (taken[slot] & present).any():
                    if card is Cardinality.ONE_TO_ONE:
                        raise ExecutionError(
                            "multiple matches for labels: "
                            "many-to-one matching must be explicit (group_left/group_right)"
                        )
                    raise ExecutionError("multiple matches for labels: grouping labels must ensure unique matches")
                taken[slot] = taken[slot] | present if slot in taken else present
                out.append(VSeries(labels, values, present))
        return out

    # --- aggregations ----------------------------------------------------------------------

    def aggregate(self, node: Aggregation) -> Vector:
        vector = self.eval(node.expr)
        param = self.eval(node.param).values if node.param is not None else None
        groups: dict[tuple, tuple[dict[str, str], list[VSeries]]] = {}
        for item in vector.series:
            if node.without:
                labels = {k: v for k, v in item.labels.items() if k not in node.grouping and k != NAME}
            else:
                labels = {k: item.labels[k] for k in node.grouping if k in item.labels}
            groups.setdefault(label_key(labels), (labels, []))[1].append(item)
        out: list[VSeries] = []
        with np.errstate(all="ignore"):
            for index, (labels, members) in enumerate(groups.values()):
                if index % DEADLINE_CHECK_EVERY == 0:
                    self.check_deadline()
                if node.op in ("topk", "bottomk"):
                    out += select_k(node.op, param, members)
                else:
                    values, present = AGGREGATORS[node.op](members, param, len(self.steps))
                    out.append(VSeries(labels, values, present))
        return Vector(out)


def signature_function(matching: VectorMatching) -> Callable[[dict[str, str]], tuple]:
    if matching.on:
        names = matching.labels
        return lambda labels: tuple(labels.get(name, "") for name in names)
    ignored = {*matching.labels, NAME}
    return lambda labels: tuple(sorted(item for item in labels.items() if item[0] not in ignored))


def _format_labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{name}="{value}"' for name, value in sorted(labels.items())) + "}"


def _refuse_duplicates_on_one_side(group: list[VSeries], matching: VectorMatching) -> None:
    """Two series of the "one" side with the same signature at the same step: Prometheus
    refuses the operation (many-to-many matching)."""
    count = np.zeros_like(group[0].present, dtype=np.int64)
    for item in group:
        count += item.present
    if not (count > 1).any():
        return
    step = int(np.flatnonzero(count > 1)[0])
    first, second = [item for item in group if item.present[step]][:2]
    side = "left" if matching.card is Cardinality.ONE_TO_MANY else "right"
    if matching.on:
        shown = {name: first.labels[name] for name in matching.labels if first.labels.get(name)}
    else:
        shown = {k: v for k, v in first.labels.items() if k not in matching.labels and k != NAME}
    raise ExecutionError(
        f"found duplicate series for the match group {_format_labels(shown)} on the {side} hand-side of the "
        f"operation: [{_format_labels(second.labels)}, {_format_labels(first.labels)}];many-to-many matching not "
        "allowed: matching labels must be unique on one side"
    )


def result_labels(
    many: dict[str, str], one: dict[str, str], op: str, matching: VectorMatching, return_bool: bool
) -> dict[str, str]:
    """The labels of a vector-vector result (Prometheus' resultMetric): the "many" side's,
    without the name after arithmetic or `bool`; one-to-one keeps only the `on` labels (or
    drops the `ignoring` ones); group_x(labels) copies those labels from the "one" side."""
    labels = without_name(many) if op in ARITHMETIC or return_bool else dict(many)
    if matching.card is Cardinality.ONE_TO_ONE:
        if matching.on:
            labels = {name: value for name, value in labels.items() if name in matching.labels}
        else:
            labels = {name: value for name, value in labels.items() if name not in matching.labels}
    for name in matching.include:
        if one.get(name):
            labels = {**labels, name: one[name]}
        elif name in labels:
            labels = {k: v for k, v in labels.items() if k != name}
    return labels


def vector_scalar(op: str, vector: Vector, scalar: np.ndarray, scalar_first: bool, return_bool: bool) -> list[VSeries]:
    """An operation between each series of `vector` and a scalar. A filtering comparison
    keeps the vector's value whichever side it is on."""
    out = []
    for item in vector.series:
        left, right = (scalar, item.values) if scalar_first else (item.values, scalar)
        if op in ARITHMETIC:
            out.append(VSeries(without_name(item.labels), ARITHMETIC_OPS[op](left, right), item.present))
            continue
        keep = COMPARISON_OPS[op](left, right)
        if return_bool:
            out.append(VSeries(without_name(item.labels), keep.astype(np.float64), item.present))
        else:
            out.append(VSeries(item.labels, item.values, item.present & keep))
    return out


def set_operation(op: str, lhs: Vector, rhs: Vector, matching: VectorMatching) -> list[VSeries]:
    """`and`: left series at the steps where the right side has one with their signature;
    `unless`: at the steps where it has none; `or`: all left series, plus right series at the
    steps where the left side has none with their signature."""
    signature = signature_function(matching)

    def presence_by_signature(series: list[VSeries]) -> dict[tuple, np.ndarray]:
        found: dict[tuple, np.ndarray] = {}
        for item in series:
            sig = signature(item.labels)
            found[sig] = found[sig] | item.present if sig in found else item.present
        return found

    if op == "or":
        left = presence_by_signature(lhs.series)
        out = list(lhs.series)
        for item in rhs.series:
            taken = left.get(signature(item.labels))
            out.append(item if taken is None else VSeries(item.labels, item.values, item.present & ~taken))
        return out
    right = presence_by_signature(rhs.series)
    out = []
    for item in lhs.series:
        other = right.get(signature(item.labels))
        if op == "and":
            if other is not None:
                out.append(VSeries(item.labels, item.values, item.present & other))
        else:
            out.append(item if other is None else VSeries(item.labels, item.values, item.present & ~other))
    return out


# --- aggregation operators: (members, parameter, number of steps) -> (values, present) ---------


def _stack(members: list[VSeries]) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([m.values for m in members]), np.stack([m.present for m in members])


def _sum(members, param, n):
    values = np.zeros(n)
    present = np.zeros(n, dtype=bool)
    for member in members:
        values = np.where(member.present, np.where(present, values + member.values, member.values), values)
        present |= member.present
    return values, present


def _count(members, param, n):
    count = np.zeros(n)
    for member in members:
        count += member.present
    return count, count > 0


def _avg(members, param, n):
    # Prometheus' incremental mean, which cannot overflow where a sum would.
    mean = np.zeros(n)
    count = np.zeros(n)
    for member in members:
        value, present = member.values, member.present
        first = present & (count == 0)
        count = count + present
        infinite = np.isinf(mean)
        # An infinite mean stays as it is when the value is the same infinity or a number.
        stays = infinite & ((np.isinf(value) & ((mean > 0) == (value > 0))) | (~np.isinf(value) & ~np.isnan(value)))
        update = present & ~first & ~stays
        mean = np.where(first, value, np.where(update, mean + (value / count - mean / count), mean))
    return mean, count > 0


def _extreme(smaller_wins: bool):
    def aggregate(members, param, n):
        values = np.full(n, np.nan)
        present = np.zeros(n, dtype=bool)
        for member in members:
            value = member.values
            better = value < values if smaller_wins else value > values
            # The first value, a better one, or any value over a NaN one.
            take = member.present & (~present | better | np.isnan(values))
            values = np.where(take, value, values)
            present |= member.present
        return values, present

    return aggregate


def _stddev(members, param, n):
    mean = np.zeros(n)
    total = np.zeros(n)
    count = np.zeros(n)
    for member in members:
        value, present = member.values, member.present
        count = count + present
        delta = value - mean
        new_mean = np.where(present, np.where(count == 1, value, mean + delta / np.maximum(count, 1)), mean)
        total = np.where(present & (count > 1), total + delta * (value - new_mean), total)
        mean = new_mean
    return np.sqrt(total / np.maximum(count, 1)), count > 0


def _quantile(members, param, n):
    """The φ-quantile of the values at each step, interpolating linearly between the two
    nearest ranks (NaN values sort first, as in Prometheus)."""
    values, present = _stack(members)
    nan = np.isnan(values)
    tier = np.where(present, np.where(nan, 0, 1), 2)  # NaN first, then numbers, absent last
    order = np.lexsort((np.where(present & ~nan, values, 0.0), tier), axis=0)
    ordered = np.take_along_axis(np.where(present, values, np.nan), order, axis=0)
    count = present.sum(axis=0)
    q = param
    rank = q * (count - 1)
    lower = np.clip(np.nan_to_num(np.floor(rank)), 0, np.maximum(count - 1, 0)).astype(np.int64)
    upper = np.minimum(np.maximum(count - 1, 0), lower + 1)
    weight = rank - np.floor(rank)
    columns = np.arange(n)
    result = ordered[lower, columns] * (1 - weight) + ordered[upper, columns] * weight
    result = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, result))
    return np.where(np.isnan(q), np.nan, result), count > 0


def select_k(op: str, param: np.ndarray, members: list[VSeries]) -> list[VSeries]:
    """topk/bottomk: per step, the k members with the largest (smallest) values, keeping
    their labels. NaN values come after all numbers; k is truncated to an integer."""
    values, present = _stack(members)
    nan = np.isnan(values)
    tier = np.where(present, np.where(nan, 1, 2), 0)  # numbers first, then NaN, absent never
    number = np.where(present & ~nan, values, 0.0)
    order = np.lexsort((-number if op == "topk" else number, -tier), axis=0)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(len(members))[:, None], order.shape), axis=0)
    k = np.where(np.isnan(param), 0, np.trunc(np.clip(param, -1, len(members) + 1)))
    selected = present & (rank < k[None, :])
    return [
        VSeries(member.labels, member.values, selected[index])
        for index, member in enumerate(members)
        if selected[index].any()
    ]


AGGREGATORS = {
    "sum": _sum,
    "count": _count,
    "avg": _avg,
    "min": _extreme(smaller_wins=True),
    "max": _extreme(smaller_wins=False),
    "stddev": _stddev,
    "quantile": _quantile,
}
