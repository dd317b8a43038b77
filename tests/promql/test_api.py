"""The Prometheus HTTP API v1 endpoints: their JSON shapes, parameters (GET and form POST,
RFC 3339 and Unix times), error envelopes and codes, authentication, and the routing of
/api/v1/ on the prometheus port."""

import base64
import json
import math

import pytest
from django.test import Client

from monitoring.models import GlobalSettings
from monitoring.promql import middleware
from monitoring.promql.api import format_timestamp, format_values, parse_duration, parse_time
from monitoring.promql.errors import BadDataError

from .conftest import T0

pytestmark = pytest.mark.django_db

BASE = "/prometheus/api/v1"


@pytest.fixture
def data(load) -> None:
    load('up{job="api",instance="a:9100"}', [(0, 1), (60, 1), (120, 0)])
    load('up{job="api",instance="b:9100"}', [(0, 1), (60, 1), (120, 1)])
    load('up{job="db",instance="c:9100"}', [(0, 1)])
    load('requests_total{job="api"}', [(t, t * 2.0) for t in range(0, 121, 30)])
    load("latency_bucket", {"le": "0.5"}, [(0, 3)])
    load("latency_bucket", {"le": "+Inf"}, [(0, 4)])
    load("latency_sum", [(0, 1.5)])
    load("latency_count", [(0, 4)])


@pytest.fixture
def client(api_keys) -> Client:
    return Client(HTTP_X_API_KEY=api_keys["viewer"])


def ts(offset: float) -> str:
    return str(T0 + offset)


def ok(response) -> object:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "success"
    return body["data"]


def failed(response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["status"] == "error" and body["errorType"] == error_type
    return body["error"]


# --- formatting and parameters --------------------------------------------------------------


def test_values_are_formatted_as_prometheus_formats_them():
    values = [1.0, 0.5, -0.0, 1e21, 1e20, 1e-7, 1e-5, 123456789.123, math.nan, math.inf, -math.inf, 2.5e-7, 1.5e16]
    assert format_values(values) == [
        "1", "0.5", "-0", "1e+21", "100000000000000000000", "1e-07", "0.00001", "123456789.123", "NaN", "+Inf",
        "-Inf", "2.5e-07", "15000000000000000",
    ]  # fmt: skip


def test_series_points_write_every_value_as_format_values_does():
    import numpy as np

    from monitoring.promql.api import points_template, series_points

    stamps = np.array([1000, 1500, 2001, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 11000, 12000])
    template = ",".join(points_template(stamps))
    cases = (
        [0.0, 1.0, -3.0, 123456789012.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0],  # whole: ints
        [-0.0, 1.0, 1e15, 2.0, 0.5, 1.0, 10.0, 100.0, 0.1, 2.25, 1.05, 3.0, 1 / 3],  # repr, ".0" removed
        [1.0, 0.5, -0.0, 1e21, 1e20, 1e-7, 1e-5, 123456789.123, math.nan, math.inf, -math.inf, 2.5e-7, 1.5e16],
    )
    times = [1, 1.5, 2.001, *range(3, 13)]
    for values in cases:
        points = json.loads("[" + series_points(template, np.array(values)) + "]")
        assert points == [[t, text] for t, text in zip(times, format_values(values), strict=True)]
    # Times as Prometheus writes them (milliseconds in three digits), whole values without ".0".
    assert series_points(template, np.array(cases[0])).startswith('[1,"0"],[1.500,"1"],[2.001,"-3"],[3,"123456789012"]')


def test_timestamps_are_float_seconds_with_milliseconds_only_when_there_are_some():
    assert [format_timestamp(ms) for ms in (1435781451781, 1000, 1500, 1050, 1001, -1500)] == [
        "1435781451.781", "1", "1.500", "1.050", "1.001", "-1.500",
    ]  # fmt: skip


def test_times_parse_from_unix_seconds_and_rfc3339():
    assert parse_time("1435781451.781", "time") == 1435781451781
    assert parse_time("1435781451", "time") == 1435781451000
    assert parse_time("2015-07-01T20:10:51.781Z", "time") == 1435781451781
    assert parse_time("2015-07-01T22:10:51.781+02:00", "time") == 1435781451781
    for bad in ("yesterday", "2015-07-01", "2015-07-01T20:10:51"):
        with pytest.raises(BadDataError, match=f'invalid parameter "time": cannot parse "{bad}" to a valid timestamp'):
            parse_time(bad, "time")


def test_durations_parse_from_float_seconds_and_prometheus_durations():
    assert parse_duration("15", "step") == 15_000
    assert parse_duration("0.5", "step") == 500
    assert parse_duration("1m30s", "step") == 90_000
    assert parse_duration("2h", "step") == 7_200_000
    for bad in ("5x", "m5", "1s1m", ""):
        with pytest.raises(BadDataError, match='invalid parameter "step": cannot parse'):
            parse_duration(bad, "step")


# --- query ----------------------------------------------------------------------------------


def test_instant_query_returns_a_vector(data, client):
    response = client.get(f"{BASE}/query", {"query": 'up{job="api"}', "time": ts(60)})
    assert ok(response) == {
        "resultType": "vector",
        "result": [
            {"metric": {"__name__": "up", "instance": "a:9100", "job": "api"}, "value": [T0 + 60, "1"]},
            {"metric": {"__name__": "up", "instance": "b:9100", "job": "api"}, "value": [T0 + 60, "1"]},
        ],
    }


def test_instant_query_by_post_form_and_rfc3339_time(data, client):
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(T0 + 120.5, tz=UTC).isoformat().replace("+00:00", "Z")
    response = client.post(f"{BASE}/query", {"query": "sum by (job) (up)", "time": at})
    result = ok(response)["result"]
    assert result == [
        {"metric": {"job": "api"}, "value": [T0 + 120.5, "1"]},
        {"metric": {"job": "db"}, "value": [T0 + 120.5, "1"]},
    ]
    # The JSON number is written as Prometheus writes it: seconds, then the milliseconds.
    assert f"[{T0 + 120}.500," in response.content.decode()


def test_instant_query_of_a_scalar_a_string_and_a_range(data, client):
    assert ok(client.get(f"{BASE}/query", {"query": "1 + 1", "time": ts(0)})) == {
        "resultType": "scalar",
        "result": [T0, "2"],
    }
    assert ok(client.get(f"{BASE}/query", {"query": '"hello"', "time": ts(0)})) == {
        "resultType": "string",
        "result": [T0, "hello"],
    }
    matrix = ok(client.get(f"{BASE}/query", {"query": "requests_total[1m]", "time": ts(120)}))
    assert matrix == {
        "resultType": "matrix",
        "result": [
            {
                "metric": {"__name__": "requests_total", "job": "api"},
                "values": [[T0 + 60, "120"], [T0 + 90, "180"], [T0 + 120, "240"]],
            }
        ],
    }


def test_instant_query_defaults_to_now(load, client):
    import time

    load("fresh", [(time.time() - T0 - 5, 42)])
    assert ok(client.get(f"{BASE}/query", {"query": "fresh"}))["result"][0]["value"][1] == "42"


def test_topk_results_come_in_value_order(data, client):
    result = ok(client.get(f"{BASE}/query", {"query": "topk(3, up)", "time": ts(120)}))["result"]
    assert [item["value"][1] for item in result] == ["1", "1", "0"]


# --- query_range ----------------------------------------------------------------------------


def test_range_query_returns_a_matrix_sorted_by_labels(data, client):
    response = client.get(
        f"{BASE}/query_range", {"query": 'up{job="api"} == 1', "start": ts(0), "end": ts(120), "step": "60s"}
    )
    assert ok(response) == {
        "resultType": "matrix",
        "result": [
            {
                "metric": {"__name__": "up", "instance": "a:9100", "job": "api"},
                "values": [[T0, "1"], [T0 + 60, "1"]],  # 0 at 120 is filtered out
            },
            {
                "metric": {"__name__": "up", "instance": "b:9100", "job": "api"},
                "values": [[T0, "1"], [T0 + 60, "1"], [T0 + 120, "1"]],
            },
        ],
    }


def test_range_query_of_a_scalar_and_with_float_step(data, client):
    response = client.post(f"{BASE}/query_range", {"query": "time()", "start": ts(0), "end": ts(1), "step": "0.5"})
    assert ok(response)["result"] == [
        {"metric": {}, "values": [[T0, str(T0)], [T0 + 0.5, f"{T0}.5"], [T0 + 1, str(T0 + 1)]]}
    ]


def test_range_query_rate(data, client):
    result = ok(
        client.get(
            f"{BASE}/query_range", {"query": "rate(requests_total[1m])", "start": ts(60), "end": ts(120), "step": 30}
        )
    )["result"]
    assert result == [{"metric": {"job": "api"}, "values": [[T0 + 60, "2"], [T0 + 90, "2"], [T0 + 120, "2"]]}]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "x", "end": "1", "step": "1"}, 'invalid parameter "start": cannot parse "x" to a valid timestamp'),
        ({"start": "1", "end": "", "step": "1"}, 'invalid parameter "end": cannot parse "" to a valid timestamp'),
        ({"start": "10", "end": "1", "step": "1"}, "end timestamp must not be before start time"),
        ({"start": "1", "end": "10", "step": "x"}, 'invalid parameter "step": cannot parse "x" to a valid duration'),
        ({"start": "1", "end": "10", "step": "0"}, "zero or negative query resolution step widths are not accepted"),
        ({"start": "0", "end": "11001", "step": "1"}, "exceeded maximum resolution of 11,000 points per timeseries"),
        ({"query": "up[5m]", "start": "1", "end": "10", "step": "1"}, 'invalid expression type "range vector"'),
        ({"query": "sum(", "start": "1", "end": "10", "step": "1"}, 'invalid parameter "query": 1:5: parse error'),
    ],
)
def test_range_query_parameter_errors(db, client, params, message):
    response = client.get(f"{BASE}/query_range", {"query": "up", **params})
    assert message in failed(response, 400, "bad_data")


def test_query_errors_use_prometheus_types_and_codes(data, client, settings):
    error = failed(client.get(f"{BASE}/query", {"query": "up +"}), 400, "bad_data")
    assert error == 'invalid parameter "query": 1:5: parse error: unexpected end of input'
    error = failed(client.get(f"{BASE}/query", {"query": "up[5m:1m]"}), 400, "bad_data")
    assert "unsupported: subquery" in error
    # Many-to-many matching is an execution error (422).
    error = failed(client.get(f"{BASE}/query", {"query": "up + on(job) up", "time": ts(0)}), 422, "execution")
    assert "found duplicate series for the match group" in error
    # Past the deadline: timeout (503).
    settings.PROMQL_QUERY_TIMEOUT = 0.0
    assert "timed out" in failed(client.get(f"{BASE}/query", {"query": "up", "time": ts(0)}), 503, "timeout")


def test_too_many_samples_is_an_execution_error(data, client, settings):
    settings.PROMQL_MAX_SAMPLES = 3
    error = failed(client.get(f"{BASE}/query", {"query": "requests_total[5m]", "time": ts(120)}), 422, "execution")
    assert "too many samples" in error


def test_query_timeout_parameter_shortens_the_deadline(data, client):
    assert "timed out" in failed(client.get(f"{BASE}/query", {"query": "up", "timeout": "0s"}), 503, "timeout")
    assert failed(client.get(f"{BASE}/query", {"query": "up", "timeout": "soon"}), 400, "bad_data")


# --- metadata endpoints ---------------------------------------------------------------------


def test_series(data, client):
    result = ok(client.get(f"{BASE}/series", {"match[]": ['up{job="api"}', "latency_sum"]}))
    assert result == [
        {"__name__": "latency_sum"},
        {"__name__": "up", "instance": "a:9100", "job": "api"},
        {"__name__": "up", "instance": "b:9100", "job": "api"},
    ]
    # Only series with samples in [start, end]: c:9100's only sample is at 0.
    result = ok(client.post(f"{BASE}/series", {"match[]": "up", "start": ts(30), "end": ts(200)}))
    assert [item["instance"] for item in result] == ["a:9100", "b:9100"]
    assert ok(client.get(f"{BASE}/series", {"match[]": "up", "start": ts(-100), "end": ts(-50)})) == []
    assert failed(client.get(f"{BASE}/series"), 400, "bad_data") == "no match[] parameter provided"
    assert 'invalid parameter "match[]"' in failed(
        client.get(f"{BASE}/series", {"match[]": "sum(up)"}), 400, "bad_data"
    )


def test_labels(data, client):
    assert ok(client.get(f"{BASE}/labels")) == ["__name__", "instance", "job", "le"]
    assert ok(client.get(f"{BASE}/labels", {"match[]": "latency_bucket"})) == ["__name__", "le"]
    assert ok(client.get(f"{BASE}/labels", {"start": ts(30)})) == ["__name__", "instance", "job"]


def test_label_values(data, client):
    assert ok(client.get(f"{BASE}/label/job/values")) == ["api", "db"]
    assert ok(client.get(f"{BASE}/label/__name__/values")) == [
        "latency_bucket", "latency_count", "latency_sum", "requests_total", "up",
    ]  # fmt: skip
    assert ok(client.get(f"{BASE}/label/instance/values", {"match[]": 'up{job="db"}'})) == ["c:9100"]
    assert ok(client.get(f"{BASE}/label/job/values", {"start": ts(30), "end": ts(200)})) == ["api"]
    assert ok(client.get(f"{BASE}/label/nothing/values")) == []
    assert failed(client.get(f"{BASE}/label/bad-name/values"), 400, "bad_data") == 'invalid label name: "bad-name"'


def test_metadata(data, client):
    assert ok(client.get(f"{BASE}/metadata")) == {
        "latency": [{"type": "histogram", "help": "", "unit": ""}],
        "requests_total": [{"type": "counter", "help": "", "unit": ""}],
        "up": [{"type": "gauge", "help": "", "unit": ""}],
    }
    assert ok(client.get(f"{BASE}/metadata", {"metric": "up"})) == {"up": [{"type": "gauge", "help": "", "unit": ""}]}
    assert list(ok(client.get(f"{BASE}/metadata", {"limit": "1"}))) == ["latency"]


def test_buildinfo_and_exemplars(db, client):
    assert ok(client.get(f"{BASE}/status/buildinfo"))["version"] == "2.42.0"
    assert ok(client.post(f"{BASE}/query_exemplars", {"query": "up", "start": "1", "end": "2"})) == []


def test_other_methods_are_refused(db, client):
    assert client.delete(f"{BASE}/query").status_code == 405


# --- authentication -------------------------------------------------------------------------


def test_a_viewer_key_in_any_header_reads(data, api_keys):
    key = api_keys["viewer"]
    basic = base64.b64encode(f"grafana:{key}".encode()).decode()
    for headers in ({"HTTP_X_API_KEY": key}, {"HTTP_AUTHORIZATION": f"Bearer {key}"},
                    {"HTTP_AUTHORIZATION": f"Basic {basic}"}):  # fmt: skip
        assert ok(Client(**headers).get(f"{BASE}/query", {"query": "1"}))["resultType"] == "scalar"
    for role in ("operator", "admin"):
        assert Client(HTTP_X_API_KEY=api_keys[role]).get(f"{BASE}/labels").status_code == 200


def test_callers_without_a_valid_key_or_role_are_refused(data, api_keys):
    response = Client().get(f"{BASE}/query", {"query": "up"})
    assert "Send an API key" in failed(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")
    failed(Client(HTTP_X_API_KEY="mon_nope").get(f"{BASE}/query", {"query": "up"}), 401, "unauthorized")
    failed(Client(HTTP_X_API_KEY=api_keys["norole"]).get(f"{BASE}/labels"), 403, "forbidden")


def test_anonymous_read_when_the_setting_allows_it(data, settings, api_keys):
    settings.MONITORING_PROMETHEUS_ANONYMOUS = True
    assert ok(Client().get(f"{BASE}/label/job/values")) == ["api", "db"]
    # A key that is sent must still be valid.
    failed(Client(HTTP_X_API_KEY="mon_nope").get(f"{BASE}/labels"), 401, "unauthorized")


def test_a_signed_in_viewer_reads_with_the_session(data, users):
    browser = Client()
    browser.force_login(users["viewer"])
    assert ok(browser.get(f"{BASE}/label/job/values")) == ["api", "db"]


# --- the prometheus port --------------------------------------------------------------------


def test_api_v1_on_the_prometheus_port_is_prometheus_api(data, client, settings):
    settings.MONITORING_PROMETHEUS_PORT = 9099
    response = client.get("/api/v1/query", {"query": "sum(up)", "time": ts(0)}, SERVER_PORT="9099")
    assert ok(response)["result"] == [{"metric": {}, "value": [T0, "3"]}]
    assert ok(client.post("/api/v1/labels", SERVER_PORT="9099"))[0] == "__name__"
    # The main port's /api/ is the REST API: there is no Prometheus API at /api/v1/.
    main = client.get("/api/v1/query", {"query": "sum(up)"}, SERVER_PORT="5002")
    assert main.status_code == 404 and "status" not in main.json()
    # Everything else is served on the prometheus port too.
    assert ok(client.get(f"{BASE}/labels", SERVER_PORT="9099"))[0] == "__name__"


def test_the_prometheus_port_comes_from_the_global_settings(data, client, settings):
    settings.MONITORING_PROMETHEUS_PORT = 0
    global_settings = GlobalSettings.load()
    global_settings.prometheus_port = 9123
    global_settings.save()
    middleware.forget_prometheus_port()
    assert ok(client.get("/api/v1/query", {"query": "1"}, SERVER_PORT="9123"))["result"][1] == "1"
    assert client.get("/api/v1/query", {"query": "1"}, SERVER_PORT="8080").status_code == 404
    middleware.forget_prometheus_port()
