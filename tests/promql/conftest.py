"""Fixtures of the PromQL tests: samples loaded through the ingestion path at times
relative to a fixed origin, and the evaluator run on them as the API runs it."""

import math
import time
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pytest

from monitoring.ingest import SampleIn, ingest_samples
from monitoring.promql.evaluator import Evaluator, query_steps
from monitoring.promql.parser import parse_expr
from monitoring.promql.values import Matrix, Scalar, String, Vector

# The origin of every test's timeline, in epoch seconds: a whole hour a day ago, so every
# sample is inside the retention and none is in the future. Tests speak in seconds after it.
T0 = (int(time.time()) // 3600 - 24) * 3600


def labels_text(labels: Mapping[str, str]) -> str:
    """`name{a="b",c="d"}`, the key results are compared by (the name first, if any)."""
    name = labels.get("__name__", "")
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()) if key != "__name__")
    return f"{name}{{{inner}}}"


@pytest.fixture
def load(db) -> Callable[..., None]:
    """load("metric{a=\"b\"}", [(seconds after T0, value), ...]) or load(name, labels, points)."""

    def store(metric: str, labels: Mapping[str, str] | Iterable, points: Iterable[tuple[float, float]] = ()) -> None:
        if not isinstance(labels, Mapping):
            points, labels = labels, {}
        if "{" in metric:
            metric, _, inner = metric.partition("{")
            for pair in filter(None, inner.rstrip("}").split(",")):
                key, _, value = pair.partition("=")
                labels = {**labels, key.strip(): value.strip().strip('"')}
        samples = [SampleIn(metric, dict(labels), float(value), T0 + offset) for offset, value in points]
        result = ingest_samples(samples, now=_at(max(T0 + offset for offset, _ in points)))
        assert result.accepted == len(samples), result.rejected

    return store


def _at(seconds: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, tz=UTC)


def evaluate(expr: str, steps: np.ndarray):
    return Evaluator(steps, deadline=time.monotonic() + 60, max_samples=10_000_000).eval(parse_expr(expr))


@pytest.fixture
def instant(db) -> Callable[[str, float], object]:
    """The result of `expr` at T0 + `at` seconds: {labels text: value} for a vector, the
    float for a scalar, the string for a string, {labels text: [(t, v)...]} for a matrix."""

    def run(expr: str, at: float):
        value = evaluate(expr, np.array([round((T0 + at) * 1000)], dtype=np.int64))
        if isinstance(value, Scalar):
            return float(value.values[0])
        if isinstance(value, String):
            return value.value
        if isinstance(value, Matrix):
            return {
                labels_text(data.labels): [
                    (ms / 1000 - T0, v) for ms, v in zip(data.ts.tolist(), data.values.tolist(), strict=True)
                ]
                for data in value.series
            }
        assert isinstance(value, Vector)
        found = {}
        for item in value.series:
            if item.present[0]:
                key = labels_text(item.labels)
                assert key not in found, f"{key} twice in the result"
                found[key] = float(item.values[0])
        return found

    return run


@pytest.fixture
def range_query(db) -> Callable[[str, float, float, float], dict]:
    """{labels text: [(seconds after T0, value), ...]} of a range query (a scalar: key "")."""

    def run(expr: str, start: float, end: float, step: float) -> dict:
        steps = query_steps(round((T0 + start) * 1000), round((T0 + end) * 1000), round(step * 1000))
        value = evaluate(expr, steps)
        seconds = (steps / 1000 - T0).tolist()
        if isinstance(value, Scalar):
            return {"": list(zip(seconds, value.values.tolist(), strict=True))}
        return {
            labels_text(item.labels): [
                (t, v) for t, v, p in zip(seconds, item.values.tolist(), item.present, strict=True) if p
            ]
            for item in value.series
            if item.present.any()
        }

    return run


def same(actual: float, expected: float) -> bool:
    """Equal, NaN equal to NaN, within 1e-9 relative (hand-computed decimals)."""
    if math.isnan(expected):
        return math.isnan(actual)
    return actual == pytest.approx(expected, rel=1e-9, abs=1e-12)
