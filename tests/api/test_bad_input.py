"""Bad input never gets a 5xx or a traceback: wrong types, missing and unknown fields,
huge numbers, NaN and infinities, very long strings, invalid UTF-8, the wrong content type
(415), a body over the limit (413), ids that do not exist (404). Each answer is the error
envelope with the right status."""

import pytest

BIG = 10**40
RULE = {"name": "CPU", "metric": "cpu_usage_percent", "comparison": ">", "threshold": 90}


def assert_error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert body["success"] is False and body["error"]["code"] and body["error"]["message"]
    assert "Traceback" not in response.content.decode()
    if field is not None:
        assert field in body["error"]["details"], body
    return body


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/alert-rules", {**RULE, "threshold": "high"}, "threshold"),
        ("/api/alert-rules", {**RULE, "threshold": "NaN"}, "threshold"),
        ("/api/alert-rules", {**RULE, "threshold": "Infinity"}, "threshold"),
        ("/api/alert-rules", {**RULE, "duration": BIG}, "duration"),
        ("/api/alert-rules", {**RULE, "duration": -1}, "duration"),
        ("/api/alert-rules", {**RULE, "comparison": ">>"}, "comparison"),
        ("/api/alert-rules", {**RULE, "matchers": ["env", "prod"]}, "matchers"),
        ("/api/alert-rules", {**RULE, "name": "x" * 100_000}, "name"),
        ("/api/alert-rules", {**RULE, "channels": "email"}, "channels"),
        ("/api/targets", {}, "slug"),
        ("/api/targets", {"slug": "a b", "name": "x"}, "slug"),
        ("/api/targets", {"slug": "gw", "name": "x", "check_interval": BIG}, "check_interval"),
        ("/api/targets", {"slug": "gw", "name": "x", "labels": {"site": ["a"]}}, "labels"),
        ("/api/targets", {"slug": "gw", "name": "x", "parent": "nowhere"}, "parent"),
        ("/api/health-checks", {"key": "c", "name": "C", "kind": "http", "config": "url"}, "config"),
        ("/api/health-checks", {"key": "c", "name": "C", "kind": "http", "interval": BIG}, "interval"),
        ("/api/health-checks/run", {"check_ids": [BIG]}, "check_ids"),
        ("/api/health-checks/run", {"check_ids": "all"}, "check_ids"),
        ("/api/silences", {"matchers": [{"name": "a", "value": "b"}], "duration_hours": BIG}, "duration_hours"),
        ("/api/silences", {"matchers": [{"name": "a", "value": "b"}], "ends_at": "tomorrow"}, "ends_at"),
        ("/api/notification-channels", {"key": "x", "name": "X", "kind": "fax"}, "kind"),
        ("/api/notification-channels", {"key": "x", "name": "X", "kind": "webhook", "secrets": {"a": 1}}, "secrets"),
        ("/api/escalation-policies", {"key": "p", "name": "P", "steps": [{"after_minutes": BIG}]}, "steps"),
        ("/api/api-keys", {"name": "k", "expires_at": "soon"}, "expires_at"),
        ("/api/notifications/test", {"channels": "email"}, "channels"),
        ("/api/notifications/test", {"channels": ["x" * 1000]}, "channels"),
    ],
)
def test_invalid_fields_are_a_400_naming_the_field(path, body, field, call):
    assert_error(call("admin", "POST", path, body), 400, field)


@pytest.mark.parametrize(
    "path",
    [
        "/api/alerts?status=burning",
        "/api/alerts?hours=abc",
        "/api/alerts?hours=1e400",
        "/api/alerts?since=yesterday",
        f"/api/alerts?hours={BIG}",
        "/api/notifications?hours=-1",
        f"/api/notifications?alert={BIG}",
        f"/api/silences?rule={BIG}",
        "/api/metrics?metric=cpu%20usage",
        "/api/metrics?hours=NaN",
        "/api/metrics?hours=Infinity",
        f"/api/metrics?start={BIG}",
        "/api/metrics?metrics=cpu_usage_percent",
        "/api/targets/1/health?hours=NaN",
        f"/api/targets/1/health?limit={BIG}",
        "/api/health-checks?status=sideways",
        "/api/silences?rule=abc",
        "/api/audit-log?since=notadate",
        "/api/alert-rules?enabled=perhaps",
    ],
)
def test_invalid_query_parameters_are_a_400(path, call, make_series):
    from monitoring.models import MonitoringTarget

    MonitoringTarget.objects.create(pk=1, slug="t1", name="T1")
    assert_error(call("admin", "GET", path), 400)


@pytest.mark.parametrize(
    "path",
    [
        f"/api/alerts/{BIG}",
        f"/api/alert-rules/{BIG}",
        f"/api/silences/{BIG}",
        f"/api/health-checks/{BIG}",
        f"/api/targets/{BIG}",
        f"/api/targets/{BIG}/health",
        f"/api/api-keys/{BIG}",
        f"/api/notification-channels/{BIG}",
        f"/api/escalation-policies/{BIG}",
        f"/api/discovered-targets/{BIG}",
        "/api/alerts/abc",
        "/api/no-such-endpoint",
        "/api/heartbeat/not-a-uuid",
    ],
)
def test_ids_that_do_not_exist_are_a_404(path, call):
    assert_error(call("admin", "GET", path), 404)


@pytest.mark.parametrize("path", [f"/api/alerts/{BIG}/acknowledge", f"/api/alert-rules/{BIG}/silence"])
def test_actions_on_huge_ids_are_a_404(path, call):
    assert_error(call("admin", "POST", path, {"duration_hours": 1}), 404)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "CPU", "metric": ',  # truncated
        b'{"name": "\xff\xfe"}',  # not UTF-8
        b'{"threshold": NaN}',  # not JSON: JSON has no NaN
        b'{"threshold": Infinity}',
        b"[1, 2, 3]",  # not an object
        b'"just a string"',
        b"\x00\x01\x02",
    ],
)
def test_malformed_json_bodies_are_a_400(raw, call):
    response = call("admin", "POST", "/api/alert-rules", content_type="application/json", data=raw)
    assert_error(response, 400)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"],
)
def test_a_body_that_is_not_json_is_a_415(content_type, call):
    response = call("admin", "POST", "/api/alert-rules", content_type=content_type, data=b"name=CPU&threshold=90")
    assert_error(response, 415)


def test_json_labelled_as_a_form_is_taken_as_curl_sends_it(call):
    """`curl -d '{...}'` labels its JSON application/x-www-form-urlencoded."""
    import json

    response = call(
        "admin",
        "POST",
        "/api/alert-rules",
        content_type="application/x-www-form-urlencoded",
        data=json.dumps(RULE).encode(),
    )
    assert response.status_code == 201


@pytest.mark.parametrize("path", ["/api/alert-rules", "/api/metrics", "/api/metrics/prometheus", "/api/targets"])
def test_a_body_over_the_limit_is_a_413(path, call, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = settings.MONITORING_MAX_BODY_BYTES = 1000
    body = b'{"name": "' + b"x" * 2000 + b'"}'
    response = call("admin", "POST", path, content_type="application/json", data=body)
    assert_error(response, 413)


def test_unknown_fields_are_ignored_and_missing_ones_named(call):
    created = call("admin", "POST", "/api/alert-rules", {**RULE, "colour": "red"})
    assert created.status_code == 201 and "colour" not in created.json()["rule"]
    body = assert_error(call("admin", "POST", "/api/alert-rules", {"name": "x"}), 400)
    assert {"metric", "comparison", "threshold"} <= set(body["error"]["details"])


def test_nan_and_infinities_pushed_as_strings_are_samples_not_errors(call):
    samples = [{"metric": "temp", "value": value} for value in ("NaN", "+Inf", "-Inf")]
    response = call("viewer", "POST", "/api/metrics", {"samples": samples})
    assert response.status_code == 200 and response.json()["accepted"] == 3
    huge = b'{"samples": [{"metric": "temp", "value": 1e999}, {"metric": "temp", "value": 1, "timestamp": 1e999}]}'
    response = call("viewer", "POST", "/api/metrics", content_type="application/json", data=huge)
    assert response.status_code == 200  # 1e999 parses as +Inf: a value, but no timestamp
    assert response.json()["errors"] == [{"index": 1, "reason": "invalid_timestamp"}]


@pytest.mark.parametrize("query", [f"rule={BIG}", "rule=²", f"target={BIG}"])
def test_ids_in_filters_that_no_database_could_hold_find_nothing(query, call):
    response = call("admin", "GET", f"/api/alerts?{query}")
    assert response.status_code == 200 and response.json()["count"] == 0
    assert call("admin", "GET", f"/api/notifications?channel={BIG}").json()["count"] == 0
