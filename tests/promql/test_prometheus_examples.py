"""The same samples loaded here and given to Prometheus itself: the examples of Prometheus'
own PromQL test data (promql/testdata/functions.test of the 2.x releases), and a table of
expressions over every function and operator whose answers `promtool test rules` (the real
Prometheus 2.42 engine) must confirm exactly, bit for bit."""

import json
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.django_db

PROMTOOL = shutil.which("promtool") or "promtool"


def expand(notation: str, interval: float) -> list[tuple[float, float]]:
    """Prometheus' series notation (`0+10x5 1 _ 3-1x2`) as (seconds, value) samples, one per
    interval from 0; `_` skips a sample."""
    samples: list[tuple[float, float]] = []
    index = 0
    for item in notation.split():
        if item == "_":
            index += 1
            continue
        if "x" in item:
            start_step, times = item.split("x")
            head, tail = start_step[0], start_step[1:]  # the first character may be a sign
            sign = "+" if "+" in tail else "-" if "-" in tail else ""
            start, step = (head + tail.split(sign)[0], float(tail.split(sign)[1])) if sign else (start_step, 0.0)
            for n in range(int(times) + 1):
                samples.append((index * interval, float(start) + (-n if sign == "-" else n) * step))
                index += 1
            continue
        samples.append((index * interval, float(item)))
        index += 1
    return samples


def test_expand_notation():
    assert expand("0+10x2 5 _ 3-1x1", 60) == [(0, 0), (60, 10), (120, 20), (180, 5), (300, 3), (360, 2)]
    assert expand("-1+2x1 7x1", 1) == [(0, -1), (1, 1), (2, 7), (3, 7)]


# --- promql/testdata/functions.test (Prometheus 2.x) ----------------------------------------


@pytest.fixture
def http_requests(load) -> None:
    # load 5m
    load('http_requests{path="/foo"}', expand("0+10x10", 300))
    load('http_requests{path="/bar"}', expand("0+10x5 0+10x5", 300))
    load('canary{job="app-server",instance="1",group="canary"}', expand("0+80x10", 300))


def test_increase_example(http_requests, instant):
    # eval instant at 50m increase(http_requests[50m]): {path="/foo"} 100, {path="/bar"} 90
    assert instant("increase(http_requests[50m])", 3000) == {'{path="/foo"}': 100.0, '{path="/bar"}': 90.0}


def test_irate_example(http_requests, instant):
    # eval instant at 50m irate(http_requests[50m]): both .03333333333333333333
    assert instant("irate(http_requests[50m])", 3000) == pytest.approx(
        {'{path="/foo"}': 0.03333333333333333, '{path="/bar"}': 0.03333333333333333}
    )
    # Counter reset. eval instant at 30m irate(http_requests[50m]): /foo .0333..., /bar 0
    assert instant("irate(http_requests[50m])", 1800) == pytest.approx({'{path="/foo"}': 0.03333333333333333,
                                                                          '{path="/bar"}': 0.0})  # fmt: skip


def test_rate_example(http_requests, instant):
    # eval instant at 50m rate(http_requests{group="canary", ...}[50m]): 0.26666666666666666
    result = instant('rate(canary{group="canary", instance="1", job="app-server"}[50m])', 3000)
    assert result == {'{group="canary",instance="1",job="app-server"}': 0.26666666666666666}


def test_vector_example(db, instant):
    # eval instant at 60m vector(time()): {} 3600 (here the origin is T0, not 0)
    from .conftest import T0

    assert instant("vector(time())", 3600) == {"{}": float(T0 + 3600)}


# --- the same answers as Prometheus 2.42, checked by promtool --------------------------------

INTERVAL = 60  # seconds between the samples of SERIES
# Counters of 1/s, 2/s, 0.5/s (with a reset) and 0.25/s, so that sums of rates over three or
# more series are exact: Prometheus adds series in the order it created them, which in
# promtool's tests is random, and a sum of three inexact floats depends on the order.
SERIES = {
    'http_requests{job="api",instance="0",group="production"}': "0+60x20",
    'http_requests{job="api",instance="1",group="production"}': "0+120x20",
    'http_requests{job="api",instance="0",group="canary"}': "0+30x8 2+30x11",
    'http_requests{job="app",instance="0",group="production"}': "5+15x20",
    'temperature{room="a"}': "20 21.5 19 25 22 _ _ 30 18.25 17 16 15 14 13 12 11 10 9 8 7 6",
    'temperature{room="b"}': "-3 -2 -1 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17",
    'owner{instance="0",team="red"}': "1x20",
    'owner{instance="1",team="blue"}': "2x20",
    'latency_bucket{le="0.1",job="api"}': "0+5x20",
    'latency_bucket{le="0.25",job="api"}': "0+7x20",
    'latency_bucket{le="1",job="api"}': "0+11x20",
    'latency_bucket{le="+Inf",job="api"}': "0+12x20",
    'latency_bucket{le="0.1",job="app"}': "0+1x20",
    'latency_bucket{le="0.25",job="app"}': "0+1x20",
    'latency_bucket{le="1",job="app"}': "0+3x20",
    'latency_bucket{le="+Inf",job="app"}': "0+4x20",
}
EXPRESSIONS = [
    ("rate(http_requests[5m])", 600),
    ("rate(http_requests[5m])", 610),  # windows off the sample grid: extrapolation
    ("rate(http_requests[3m])", 530),  # across the canary's counter reset
    ("increase(http_requests[7m])", 560),
    ("increase(http_requests[20m])", 1000),  # the series start inside the window
    ("irate(http_requests[5m])", 545),
    ("irate(http_requests[5m])", 500),  # the canary's reset is the last step
    ("delta(temperature[4m])", 600),
    ("delta(temperature[10m])", 430),
    ("sum_over_time(temperature[5m])", 500),
    ("min_over_time(temperature[10m])", 480),
    ("max_over_time(temperature[10m])", 480),
    ("count_over_time(temperature[10m])", 480),
    ("last_over_time(temperature[10m])", 420),
    ("avg_over_time(temperature[1m])", 180),
    ("temperature offset 2m", 300),
    ("temperature", 600),
    ("temperature", 720),  # room a's last sample is 5 minutes old: still there
    ("sum by (job) (rate(http_requests[5m]))", 900),
    ("avg by (job) (http_requests{group='production'})", 700),
    ("avg(temperature)", 240),
    ("min by (job) (http_requests)", 700),
    ("max without (instance) (http_requests)", 700),
    ("count by (group) (http_requests)", 700),
    ("stddev by (instance) (http_requests{job='api'})", 700),
    ("stddev(temperature)", 600),
    ("topk(2, http_requests)", 700),
    ("bottomk(1, http_requests) by (job)", 700),
    ("quantile(0.75, http_requests)", 700),
    ("quantile by (job) (0.3, http_requests)", 700),
    ("histogram_quantile(0.5, latency_bucket)", 600),
    ("histogram_quantile(0.9, sum by (le) (rate(latency_bucket[5m])))", 900),
    ("histogram_quantile(0.99, rate(latency_bucket[5m]))", 900),
    ("histogram_quantile(0.1, latency_bucket)", 600),
    ("abs(temperature - 20)", 300),
    ("ceil(temperature / 3)", 480),
    ("floor(temperature / 3)", 480),
    ("round(temperature / 3)", 480),
    ("round(temperature, 5)", 480),
    ("clamp_min(temperature, 10)", 480),
    ("clamp_max(temperature, 10)", 480),
    ("scalar(temperature{room='b'}) * 2", 600),
    ("vector(7) + 3", 0),
    ("2 ^ 3 ^ 2 - 10 % 4 / 4", 0),
    ("temperature > 12", 600),
    ("12 < temperature", 600),
    ("temperature >= bool 12", 600),
    ("http_requests{group='canary'} / ignoring(group) http_requests{group='production'}", 700),
    ("http_requests * on(instance) group_left(team) owner", 700),
    ("owner * on(instance) group_right(team) http_requests", 700),
    ("http_requests{job='api'} and on(instance) owner{team='blue'}", 700),
    ("http_requests unless on(group) http_requests{group='canary'}", 700),
    ("http_requests{job='app'} or on(job) http_requests", 700),
    ("-http_requests{job='app'} + 1", 700),
    ("sum(rate(http_requests[10m])) by (group) / ignoring(group) group_left sum(rate(http_requests[10m]))", 1200),
]


def test_results_agree_with_prometheus(load, instant, tmp_path):
    for series, notation in SERIES.items():
        load(series, expand(notation, INTERVAL))
    cases = []
    for expr, at in EXPRESSIONS:
        result = instant(expr, at)
        if isinstance(result, float):  # promtool hands a scalar over as one sample without labels
            result = {"{}": result}
        assert result, f"{expr} at {at}s returned nothing: the case would check nothing"
        cases.append(
            {
                "expr": expr,
                "eval_time": f"{at}s",
                "exp_samples": [{"labels": labels, "value": value} for labels, value in result.items()],
            }
        )
    unit_test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": f"{INTERVAL}s",
                "input_series": [{"series": series, "values": notation} for series, notation in SERIES.items()],
                "promql_expr_test": cases,
            }
        ],
    }
    path = tmp_path / "promql_test.yml"
    path.write_text(json.dumps(unit_test, indent=1))  # JSON is YAML
    done = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr
