"""Evaluation of every function, aggregation and operator of the subset on stored samples,
against values computed by hand (the arithmetic is written out next to each case)."""

import math

import pytest

from monitoring.promql.errors import ExecutionError

from .conftest import same

pytestmark = pytest.mark.django_db


@pytest.fixture
def counters(load) -> None:
    # c: 1 per second, a sample every 60 s from 0 to 600.
    load('c{job="a"}', [(t, float(t)) for t in range(0, 601, 60)])
    # r: a counter that resets between 120 s and 180 s.
    load('r{job="a"}', [(0, 10), (60, 20), (120, 30), (180, 5), (240, 15), (300, 25)])
    # z: a counter whose first sample is close to its zero point.
    load('z{job="a"}', [(100, 5), (160, 65), (220, 125)])
    # g: a gauge.
    load('g{job="a"}', [(0, 1), (60, 4), (120, 2), (180, 8)])


@pytest.fixture
def fleet(load) -> None:
    load('cpu{host="a",site="n"}', [(0, 1)])
    load('cpu{host="b",site="n"}', [(0, 3)])
    load('cpu{host="c",site="s"}', [(0, 10)])
    load('mem{host="a"}', [(0, 100)])
    load('mem{host="b"}', [(0, 200)])
    load('owner{host="a",team="x"}', [(0, 2)])
    load('cap{site="n"}', [(0, 10)])


def assert_vector(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected), actual
    for key, value in expected.items():
        assert same(actual[key], value), (key, actual[key], value)


# --- selectors, lookback, offset ------------------------------------------------------------


def test_instant_selector_takes_the_latest_sample_at_or_before_the_time(counters, instant):
    assert instant("g", 150) == {'g{job="a"}': 2.0}  # the sample at 120
    assert instant("g", 180) == {'g{job="a"}': 8.0}  # exactly at a sample


def test_lookback_is_five_minutes_and_includes_its_edge(counters, instant):
    # g's last sample is at 180: still visible at 180 + 300, gone a millisecond later.
    assert instant("g", 480) == {'g{job="a"}': 8.0}
    assert instant("g", 480.001) == {}
    assert instant("g", -0.001) == {}  # before the first sample


def test_offset_moves_the_evaluation_time_back(counters, instant):
    assert instant("g offset 1m", 180) == {'g{job="a"}': 2.0}
    assert instant("g offset -1m", 60) == {'g{job="a"}': 2.0}
    assert instant("rate(c[5m] offset 1m)", 660) == {'{job="a"}': 1.0}


def test_label_matchers(load, instant):
    load('m{env="prod",dc="eu1"}', [(0, 1)])
    load('m{env="prod",dc="us1"}', [(0, 2)])
    load('m{env="dev",dc="eu2"}', [(0, 3)])
    load('m{dc="eu3"}', [(0, 4)])
    load('other{env="prod"}', [(0, 5)])
    assert set(instant('m{env="prod"}', 0)) == {'m{dc="eu1",env="prod"}', 'm{dc="us1",env="prod"}'}
    assert set(instant('m{env!="prod"}', 0)) == {'m{dc="eu2",env="dev"}', 'm{dc="eu3"}'}
    assert set(instant('m{dc=~"eu.*"}', 0)) == {'m{dc="eu1",env="prod"}', 'm{dc="eu2",env="dev"}', 'm{dc="eu3"}'}
    assert set(instant('m{dc=~"eu"}', 0)) == set()  # regexes are anchored at both ends
    assert set(instant('m{dc!~"eu.*|us1"}', 0)) == set()
    assert set(instant('m{env=""}', 0)) == {'m{dc="eu3"}'}  # an empty value matches a missing label
    assert set(instant('{env="prod"}', 0)) == {'m{dc="eu1",env="prod"}', 'm{dc="us1",env="prod"}', 'other{env="prod"}'}
    assert set(instant('{__name__=~"m|other",dc="eu1"}', 0)) == {'m{dc="eu1",env="prod"}'}
    assert set(instant('{__name__!="m",env="prod"}', 0)) == {'other{env="prod"}'}


def test_a_range_selector_in_an_instant_query_returns_the_raw_samples(counters, instant):
    # The window [60, 180] includes both ends.
    assert instant("g[2m]", 180) == {'g{job="a"}': [(60.0, 4.0), (120.0, 2.0), (180.0, 8.0)]}


def test_nan_samples_are_values(load, instant):
    load("n", [(0, math.nan)])
    assert math.isnan(instant("n", 10)["n{}"])


# --- rate, increase, delta, irate -----------------------------------------------------------


def test_rate_and_increase_without_extrapolation(counters, instant):
    # At 600 the window [300, 600] holds samples from 300 to 600: first and last on its ends.
    assert instant("increase(c[5m])", 600) == {'{job="a"}': 300.0}
    assert instant("rate(c[5m])", 600) == {'{job="a"}': 1.0}


def test_rate_extrapolates_to_the_window_ends(counters, instant):
    # At 630 the window [330, 630] holds 360..600: increase 240 over 240 s; both ends are
    # 30 s away (< 1.1 x the 60 s average), so it extrapolates to 300 s: 240 * 300 / 240.
    assert_vector(instant("increase(c[5m])", 630), {'{job="a"}': 300.0})
    assert_vector(instant("rate(c[5m])", 630), {'{job="a"}': 1.0})


def test_rate_extrapolates_half_an_interval_where_the_series_starts_later(counters, instant):
    # At 900 the window [600, 900] holds only... c's samples at 600: one sample, no rate.
    assert instant("rate(c[5m])", 900) == {}
    # At 700 the window [400, 700] holds 420..600 (4 samples, 180 s, avg 60): start is 20 s
    # away (extrapolated), end 100 s (> 66 s: half an interval, 30 s): 180 * 230 / 180.
    assert_vector(instant("increase(c[5m])", 700), {'{job="a"}': 230.0})


def test_rate_does_not_extrapolate_a_counter_below_zero(counters, instant):
    # z at 250, window [-50, 250]: 5 -> 125 over 120 s. The start is 150 s away, but at
    # this slope the counter was 0 five seconds before its first sample: 120 + 5 + 30 s.
    assert_vector(instant("increase(z[5m])", 250), {'{job="a"}': 155.0})
    assert_vector(instant("rate(z[5m])", 250), {'{job="a"}': 155.0 / 300})


def test_rate_and_increase_add_up_across_a_counter_reset(counters, instant):
    # r: 10, 20, 30, reset, 5, 15, 25: 25 - 10 + 30 (the value before the reset) = 45.
    assert_vector(instant("increase(r[5m])", 300), {'{job="a"}': 45.0})
    assert_vector(instant("rate(r[5m])", 300), {'{job="a"}': 0.15})


def test_delta_treats_a_gauge_as_it_is(counters, instant):
    assert_vector(instant("delta(g[3m])", 180), {'{job="a"}': 7.0})  # 8 - 1, window on samples
    # At 200: window [20, 200] holds 60..180: 8 - 4 = 4 over 120 s, ends 40 and 20 s away
    # (both < 66 s): extrapolated to 180 s: 4 * 180 / 120 = 6. A drop is not a reset.
    assert_vector(instant("delta(g[3m])", 200), {'{job="a"}': 6.0})
    assert_vector(instant("delta(r[5m])", 300), {'{job="a"}': 15.0})


def test_irate_uses_the_last_two_samples(counters, instant):
    assert_vector(instant("irate(r[5m])", 300), {'{job="a"}': 10 / 60})
    # Across the reset, the last value is the increase: 5 over 60 s.
    assert_vector(instant("irate(r[5m])", 180), {'{job="a"}': 5 / 60})
    assert instant("irate(r[1m])", 30) == {}  # one sample in the window


def test_rate_needs_two_samples_in_the_window(counters, instant):
    assert instant("rate(g[30s])", 180) == {}


# --- _over_time -----------------------------------------------------------------------------


def test_over_time_functions(counters, instant):
    # g[3m] at 180: samples 1, 4, 2, 8.
    assert_vector(instant("avg_over_time(g[3m])", 180), {'{job="a"}': 3.75})
    assert_vector(instant("min_over_time(g[3m])", 180), {'{job="a"}': 1.0})
    assert_vector(instant("max_over_time(g[3m])", 180), {'{job="a"}': 8.0})
    assert_vector(instant("sum_over_time(g[3m])", 180), {'{job="a"}': 15.0})
    assert_vector(instant("count_over_time(g[3m])", 180), {'{job="a"}': 4.0})
    # last_over_time keeps the metric name.
    assert_vector(instant("last_over_time(g[3m])", 200), {'g{job="a"}': 8.0})
    assert instant("sum_over_time(g[3m])", 500) == {}


def test_over_time_with_nan_samples(load, instant):
    load("n", [(0, 1), (10, math.nan), (20, 3)])
    assert_vector(instant("min_over_time(n[1m])", 20), {"{}": 1.0})  # NaN is skipped by min/max
    assert_vector(instant("max_over_time(n[1m])", 20), {"{}": 3.0})
    assert_vector(instant("sum_over_time(n[1m])", 20), {"{}": math.nan})
    assert_vector(instant("count_over_time(n[1m])", 20), {"{}": 3.0})


# --- other functions ------------------------------------------------------------------------


def test_elementwise_functions(load, instant):
    load('x{k="neg"}', [(0, -2.5)])
    load('x{k="pos"}', [(0, 1.25)])
    assert_vector(instant("abs(x)", 0), {'{k="neg"}': 2.5, '{k="pos"}': 1.25})
    assert_vector(instant("ceil(x)", 0), {'{k="neg"}': -2.0, '{k="pos"}': 2.0})
    assert_vector(instant("floor(x)", 0), {'{k="neg"}': -3.0, '{k="pos"}': 1.0})
    # Ties round up: -2.5 -> -2; to the nearest 0.5: 1.25 -> 1.5.
    assert_vector(instant("round(x)", 0), {'{k="neg"}': -2.0, '{k="pos"}': 1.0})
    assert_vector(instant("round(x, 0.5)", 0), {'{k="neg"}': -2.5, '{k="pos"}': 1.5})
    assert_vector(instant("clamp_min(x, 0)", 0), {'{k="neg"}': 0.0, '{k="pos"}': 1.25})
    assert_vector(instant("clamp_max(x, 1)", 0), {'{k="neg"}': -2.5, '{k="pos"}': 1.0})


def test_time_vector_and_scalar(load, instant):
    from .conftest import T0

    load('one{k="a"}', [(0, 7)])
    load('two{k="a"}', [(0, 1)])
    load('two{k="b"}', [(0, 2)])
    assert instant("time()", 90) == T0 + 90
    assert instant("vector(3)", 0) == {"{}": 3.0}
    assert instant("scalar(one)", 0) == 7.0
    assert math.isnan(instant("scalar(two)", 0))  # two samples
    assert math.isnan(instant("scalar(missing)", 0))  # none
    assert instant("vector(time())", 0) == {"{}": float(T0)}


def test_histogram_quantile_interpolates_within_the_bucket(load, instant):
    for le, count in (("0.1", 10), ("0.5", 30), ("1", 40), ("+Inf", 50)):
        load("req_bucket", {"le": le, "job": "api"}, [(0, count)])
    # q = 0.5: rank 25 falls in (0.1, 0.5] holding 20: 0.1 + 0.4 * (25 - 10) / 20 = 0.4.
    assert_vector(instant("histogram_quantile(0.5, req_bucket)", 0), {'{job="api"}': 0.4})
    # q = 0.1: rank 5 in the first bucket, which starts at 0: 0.1 * 5 / 10.
    assert_vector(instant("histogram_quantile(0.1, req_bucket)", 0), {'{job="api"}': 0.05})
    # q = 0.9: rank 45 is in the +Inf bucket: the highest finite bound.
    assert_vector(instant("histogram_quantile(0.9, req_bucket)", 0), {'{job="api"}': 1.0})
    assert_vector(instant("histogram_quantile(1.5, req_bucket)", 0), {'{job="api"}': math.inf})
    assert_vector(instant("histogram_quantile(-1, req_bucket)", 0), {'{job="api"}': -math.inf})


def test_histogram_quantile_without_an_inf_bucket_is_nan(load, instant):
    load("h_bucket", {"le": "1"}, [(0, 3)])
    load("h_bucket", {"le": "2"}, [(0, 4)])
    assert_vector(instant("histogram_quantile(0.5, h_bucket)", 0), {"{}": math.nan})


def test_histogram_quantile_with_missing_buckets_at_some_steps(load, range_query):
    load("h_bucket", {"le": "1"}, [(0, 5), (60, 5)])
    load("h_bucket", {"le": "+Inf"}, [(0, 10), (60, 10)])
    load("h_bucket", {"le": "2"}, [(60, 10)])  # appears later
    result = range_query("histogram_quantile(0.5, h_bucket)", 0, 60, 60)
    # At 0: buckets 1:5, +Inf:10: rank 5 in the first bucket -> 1. At 60: 1:5, 2:10, +Inf:10:
    # rank 5 -> first bucket -> 0 + 1 * 5 / 5 = 1; q 0.75 would fall in (1, 2].
    assert result == {"{}": [(0.0, 1.0), (60.0, 1.0)]}
    later = range_query("histogram_quantile(0.75, h_bucket)", 0, 60, 60)
    assert later["{}"][0] == (0.0, 1.0)  # at 0, rank 7.5 is in +Inf: highest finite bound
    assert same(later["{}"][1][1], 1.5)  # at 60: 1 + 1 * (7.5 - 5) / 5


# --- aggregations ---------------------------------------------------------------------------


def test_aggregations(fleet, instant):
    assert_vector(instant("sum(cpu)", 0), {"{}": 14.0})
    assert_vector(instant("sum by (site) (cpu)", 0), {'{site="n"}': 4.0, '{site="s"}': 10.0})
    assert_vector(instant("sum(cpu) by (site)", 0), {'{site="n"}': 4.0, '{site="s"}': 10.0})
    assert_vector(instant("sum without (host) (cpu)", 0), {'{site="n"}': 4.0, '{site="s"}': 10.0})
    assert_vector(instant("avg by (site) (cpu)", 0), {'{site="n"}': 2.0, '{site="s"}': 10.0})
    assert_vector(instant("count by (site) (cpu)", 0), {'{site="n"}': 2.0, '{site="s"}': 1.0})
    assert_vector(instant("min by (site) (cpu)", 0), {'{site="n"}': 1.0, '{site="s"}': 10.0})
    assert_vector(instant("max(cpu)", 0), {"{}": 10.0})
    # Population standard deviation: values 1 and 3, mean 2: sqrt((1 + 1) / 2) = 1.
    assert_vector(instant("stddev by (site) (cpu)", 0), {'{site="n"}': 1.0, '{site="s"}': 0.0})
    assert_vector(
        instant("stddev(cpu)", 0), {"{}": math.sqrt(((1 - 14 / 3) ** 2 + (3 - 14 / 3) ** 2 + (10 - 14 / 3) ** 2) / 3)}
    )


def test_topk_bottomk_keep_the_series_labels(fleet, instant):
    assert set(instant("topk(2, cpu)", 0)) == {'cpu{host="b",site="n"}', 'cpu{host="c",site="s"}'}
    assert set(instant("bottomk(1, cpu) by (site)", 0)) == {'cpu{host="a",site="n"}', 'cpu{host="c",site="s"}'}
    assert instant("topk(0, cpu)", 0) == {}
    assert len(instant("topk(10, cpu)", 0)) == 3


def test_topk_puts_nan_after_numbers(load, instant):
    load('v{k="nan"}', [(0, math.nan)])
    load('v{k="low"}', [(0, -5)])
    assert set(instant("topk(1, v)", 0)) == {'v{k="low"}'}
    assert set(instant("bottomk(1, v)", 0)) == {'v{k="low"}'}


def test_quantile_interpolates_between_ranks(fleet, instant):
    # Values 1, 3, 10: q 0.5 is rank 1 -> 3; q 0.25 is rank 0.5 -> (1 + 3) / 2.
    assert_vector(instant("quantile(0.5, cpu)", 0), {"{}": 3.0})
    assert_vector(instant("quantile(0.25, cpu)", 0), {"{}": 2.0})
    assert_vector(instant("quantile by (site) (1, cpu)", 0), {'{site="n"}': 3.0, '{site="s"}': 10.0})
    assert_vector(instant("quantile(2, cpu)", 0), {"{}": math.inf})


# --- operators ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("2 ^ 3 ^ 2", 512.0),  # right-associative
        ("-2 ^ 2", -4.0),  # unary minus binds looser than ^
        ("7 % 3", 1.0),
        ("-7 % 3", -1.0),  # the sign of the dividend
        ("1 / 0", math.inf),
        ("0 / 0", math.nan),
        ("2 > bool 1", 1.0),
        ("2 == bool 3", 0.0),
        ("10 - 4 - 3", 3.0),  # left-associative
    ],
)
def test_scalar_arithmetic(db, instant, expr, expected):
    assert same(instant(expr, 0), expected)


def test_vector_scalar_operators(fleet, instant):
    assert_vector(
        instant("cpu * 2", 0), {'{host="a",site="n"}': 2.0, '{host="b",site="n"}': 6.0, '{host="c",site="s"}': 20.0}
    )
    # A filtering comparison keeps the name and the vector's value, on either side.
    assert_vector(instant("cpu > 2", 0), {'cpu{host="b",site="n"}': 3.0, 'cpu{host="c",site="s"}': 10.0})
    assert_vector(instant("2 < cpu", 0), {'cpu{host="b",site="n"}': 3.0, 'cpu{host="c",site="s"}': 10.0})
    assert_vector(
        instant("cpu > bool 2", 0), {'{host="a",site="n"}': 0.0, '{host="b",site="n"}': 1.0, '{host="c",site="s"}': 1.0}
    )
    assert_vector(
        instant("-cpu", 0), {'{host="a",site="n"}': -1.0, '{host="b",site="n"}': -3.0, '{host="c",site="s"}': -10.0}
    )


def test_vector_matching_one_to_one(fleet, instant):
    # on(host) keeps only host; ignoring(site) drops site: both match cpu{host} with mem{host}.
    assert_vector(instant("cpu / on(host) mem", 0), {'{host="a"}': 0.01, '{host="b"}': 0.015})
    assert_vector(instant("cpu / ignoring(site) mem", 0), {'{host="a"}': 0.01, '{host="b"}': 0.015})
    # A filtering comparison keeps the left value; on() limits the labels to host.
    assert_vector(instant("cpu >= on(host) (mem / 100)", 0), {'{host="a"}': 1.0, '{host="b"}': 3.0})
    assert_vector(instant("cpu > bool on(host) (mem / 100)", 0), {'{host="a"}': 0.0, '{host="b"}': 1.0})
    assert instant("cpu / mem", 0) == {}  # no labels in common beyond the name


def test_vector_matching_many_to_one(fleet, instant):
    assert_vector(instant("cpu / on(site) group_left cap", 0), {'{host="a",site="n"}': 0.1, '{host="b",site="n"}': 0.3})
    # group_left(team) copies team from the "one" side.
    assert_vector(instant("cpu * on(host) group_left(team) owner", 0), {'{host="a",site="n",team="x"}': 2.0})
    # group_right: the right side is the "many" one; the value is still left op right.
    assert_vector(
        instant("cap / on(site) group_right cpu", 0), {'{host="a",site="n"}': 10.0, '{host="b",site="n"}': 10 / 3}
    )


def test_vector_matching_errors(fleet, instant):
    with pytest.raises(ExecutionError, match="many-to-one matching must be explicit"):
        instant("cpu / on(site) cap", 0)
    with pytest.raises(ExecutionError, match="found duplicate series for the match group"):
        instant("cap / on(site) cpu", 0)
    with pytest.raises(ExecutionError, match="found duplicate series for the match group"):
        instant("cpu + on(site) group_left cpu", 0)


def test_set_operators(fleet, instant):
    assert set(instant("cpu and on(host) mem", 0)) == {'cpu{host="a",site="n"}', 'cpu{host="b",site="n"}'}
    assert set(instant("cpu unless on(host) mem", 0)) == {'cpu{host="c",site="s"}'}
    assert set(instant("mem or on(host) cpu", 0)) == {'mem{host="a"}', 'mem{host="b"}', 'cpu{host="c",site="s"}'}
    assert set(instant("cpu and cpu > 2", 0)) == {'cpu{host="b",site="n"}', 'cpu{host="c",site="s"}'}
    assert set(instant("cpu unless cpu > 2", 0)) == {'cpu{host="a",site="n"}'}
    assert set(instant("vector(1) or cpu", 0)) == {"{}", *instant("cpu", 0)}


def test_the_same_labelset_twice_is_an_execution_error(load, instant):
    load('a{k="x"}', [(0, 1)])
    load('b{k="x"}', [(0, 2)])
    with pytest.raises(ExecutionError, match="same labelset"):
        instant('abs({__name__=~"a|b"})', 0)


def test_fleet_rule_expression(load, instant):
    for device in range(10):
        load("device_connectivity", {"site": "north", "device_id": f"d{device}"}, [(0, 0.0 if device < 2 else 1.0)])
    load("device_connectivity", {"site": "south", "device_id": "s1"}, [(0, 0.0)])
    expr = 'count(device_connectivity{site="north"} < 1) / count(device_connectivity{site="north"}) > 0.1'
    assert_vector(instant(expr, 0), {"{}": 0.2})  # 2 of 10 are down
    assert instant(expr.replace("0.1", "0.25"), 0) == {}


# --- range queries --------------------------------------------------------------------------


def test_range_query_evaluates_every_step(counters, range_query):
    result = range_query("g", 0, 600, 120)
    # g: 1 at 0, 2 at 120, 8 at 180 (still visible at 240 and 480), gone at 600 (420 s old).
    assert result == {'g{job="a"}': [(0.0, 1.0), (120.0, 2.0), (240.0, 8.0), (360.0, 8.0), (480.0, 8.0)]}


def test_range_query_of_rate_and_a_scalar(counters, range_query):
    result = range_query("rate(c[5m])", 300, 600, 150)
    assert [t for t, _ in result['{job="a"}']] == [300.0, 450.0, 600.0]
    assert all(same(v, 1.0) for _, v in result['{job="a"}'])
    assert range_query("time() - 1", 0, 20, 10)[""] == [
        (0.0, result_time(0) - 1),
        (10.0, result_time(10) - 1),
        (20.0, result_time(20) - 1),
    ]


def result_time(offset: float) -> float:
    from .conftest import T0

    return float(T0 + offset)


def test_range_query_topk_chooses_per_step(load, range_query):
    load('v{k="a"}', [(0, 1), (60, 5)])
    load('v{k="b"}', [(0, 3), (60, 2)])
    assert range_query("topk(1, v)", 0, 60, 60) == {'v{k="a"}': [(60.0, 5.0)], 'v{k="b"}': [(0.0, 3.0)]}


def _prometheus_rate(points: list[tuple[int, float]], t_ms: int, range_ms: int, is_rate: bool) -> float | None:
    """Prometheus 2.42's extrapolatedRate for a counter at one step, transcribed operation by
    operation (Python floats are the same IEEE doubles as Go's)."""
    window = [(ms, value) for ms, value in points if t_ms - range_ms <= ms <= t_ms]
    if len(window) < 2:
        return None
    result = window[-1][1] - window[0][1]
    last_value = 0.0
    for _, value in window:
        if value < last_value:
            result += last_value
        last_value = value
    to_start = (window[0][0] - (t_ms - range_ms)) / 1000
    to_end = (t_ms - window[-1][0]) / 1000
    sampled = (window[-1][0] - window[0][0]) / 1000
    average = sampled / (len(window) - 1)
    if result > 0 and window[0][1] >= 0:
        to_zero = sampled * (window[0][1] / result)
        if to_zero < to_start:
            to_start = to_zero
    threshold = average * 1.1
    interval = sampled + (to_start if to_start < threshold else average / 2)
    interval += to_end if to_end < threshold else average / 2
    factor = interval / sampled
    if is_rate:
        factor /= range_ms / 1000
    return result * factor


@pytest.mark.parametrize("function", ["rate", "increase"])
def test_rate_over_many_steps_agrees_with_prometheus_arithmetic_to_the_last_bit(load, function: str) -> None:
    import numpy as np

    from .conftest import T0, evaluate

    # Windows of 1m holding no reset, one, or two (every 30-40 s); a series without resets;
    # one with a single sample (never a rate).
    resets = [(0, 7.3), (15, 9.1), (30, 1.2), (45, 3.3), (60, 0.7), (75, 2.9), (90, 4.4), (105, 0.1), (120, 1.9),
              (135, 2.35), (150, 6.7)]  # fmt: skip
    steady = [(t, 0.37 * t + 1.1) for t in range(0, 151, 15)]
    load('m{job="resets"}', resets)
    load('m{job="steady"}', steady)
    load('m{job="single"}', [(60, 3.0)])
    steps = np.arange((T0 - 30) * 1000, (T0 + 181) * 1000, 5_000, dtype=np.int64)
    vector = evaluate(f"{function}(m[1m])", steps)
    results = {item.labels["job"]: item for item in vector.series}
    assert set(results) == {"resets", "steady"}
    for job, points in (("resets", resets), ("steady", steady)):
        stored = [((T0 + t) * 1000, float(v)) for t, v in points]
        for index, t_ms in enumerate(steps.tolist()):
            expected = _prometheus_rate(stored, t_ms, 60_000, is_rate=function == "rate")
            assert bool(results[job].present[index]) == (expected is not None), (job, t_ms)
            if expected is not None:
                assert results[job].values[index] == expected, (job, t_ms)  # exactly, not approximately
