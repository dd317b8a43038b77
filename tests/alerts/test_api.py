from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.choices import AlertState
from alerts.models import Alert, AlertEvent, AlertRule, Silence
from monitoring.choices import AuditAction, AuditSource
from monitoring.models import AuditLogEntry, MonitoringTarget, Series
from notifications.models import NotificationChannel

pytestmark = pytest.mark.django_db

ROLES = (None, "norole", "viewer", "operator", "admin")
READ = {None: 401, "norole": 403, "viewer": 200, "operator": 200, "admin": 200}
OPERATE = {None: 401, "norole": 403, "viewer": 403, "operator": 200, "admin": 200}
CONFIGURE = {None: 401, "norole": 403, "viewer": 403, "operator": 403, "admin": 200}


def make_rule(key: str = "high-cpu", **extra) -> AlertRule:
    fields = {"name": key.replace("-", " ").title(), "metric": "cpu_usage_percent", "comparison": ">"}
    fields.update(threshold=80.0, severity="high")
    return AlertRule.objects.create(key=key, **{**fields, **extra})


def make_alert(rule: AlertRule, fingerprint: str = "fp", state=AlertState.ACTIVE, **extra) -> Alert:
    now = timezone.now()
    return Alert.objects.create(
        rule=rule,
        fingerprint=fingerprint,
        labels=extra.pop("labels", {"host": "gw-1"}),
        severity=extra.pop("severity", rule.severity),
        state=state,
        value=93.0,
        pending_since=extra.pop("pending_since", now - timedelta(minutes=10)),
        fired_at=None if state == AlertState.PENDING else now - timedelta(minutes=5),
        **extra,
    )


@pytest.fixture
def world(users):
    rule = make_rule()
    return {"rule": rule, "alert": make_alert(rule)}


# --- The role matrix: every route and method, each role -----------------------------------------

ROUTES = [
    ("get", "/api/alerts", None, READ, 200),
    ("get", "/api/alerts/{alert}", None, READ, 200),
    ("post", "/api/alerts/{alert}/acknowledge", {"acknowledged_by": "jo"}, OPERATE, 200),
    ("post", "/api/alerts/{alert}/resolve", {"resolved_by": "jo"}, OPERATE, 200),
    ("get", "/api/alert-rules", None, READ, 200),
    (
        "post",
        "/api/alert-rules",
        {"name": "Disk", "metric": "disk", "comparison": ">", "threshold": 90},
        CONFIGURE,
        201,
    ),
    ("get", "/api/alert-rules/{rule}", None, READ, 200),
    (
        "put",
        "/api/alert-rules/{rule}",
        {"name": "Cpu", "metric": "cpu", "comparison": ">", "threshold": 1},
        CONFIGURE,
        200,
    ),
    ("patch", "/api/alert-rules/{rule}", {"threshold": 95}, CONFIGURE, 200),
    ("delete", "/api/alert-rules/{spare_rule}", None, CONFIGURE, 200),
    ("post", "/api/alert-rules/{rule}/silence", {"duration_hours": 1}, OPERATE, 201),
    ("post", "/api/alert-rules/{rule}/enable", None, CONFIGURE, 200),
    ("post", "/api/alert-rules/{rule}/disable", None, CONFIGURE, 200),
    ("get", "/api/silences", None, READ, 200),
    ("post", "/api/silences", {"rule": "{rule}", "duration_hours": 2}, OPERATE, 201),
    ("get", "/api/silences/{silence}", None, READ, 200),
    ("delete", "/api/silences/{silence}", None, OPERATE, 200),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "expected", "success"), ROUTES, ids=lambda v: str(v)[:40])
def test_role_matrix(client_for, world, role, method, path, body, expected, success):
    spare = make_rule("spare")
    silence = Silence.objects.create(rule=world["rule"], ends_at=timezone.now() + timedelta(hours=1))
    ids = {"alert": world["alert"].pk, "rule": world["rule"].pk, "spare_rule": spare.pk, "silence": silence.pk}
    url = path.format(**ids)
    if body is not None:
        body = {k: int(v.format(**ids)) if isinstance(v, str) and v.startswith("{") else v for k, v in body.items()}

    response = getattr(client_for(None if role is None else role), method)(url, body, format="json")

    want = expected[role]
    assert response.status_code == (success if want == 200 else want), response.content
    assert response.json()["success"] is (want == 200)
    if want != 200:
        assert response.json()["error"]["code"] == {401: "unauthorized", 403: "forbidden"}[want]


# --- GET /api/alerts ------------------------------------------------------------------------------


def test_alert_list_has_the_original_shape(client_for, world):
    response = client_for("viewer").get("/api/alerts")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "alerts", "count", "next", "previous"}
    assert body["count"] == 1
    alert = body["alerts"][0]
    assert alert["id"] == world["alert"].pk
    assert alert["status"] == "active"
    assert alert["rule_id"] == world["rule"].pk
    assert alert["rule_name"] == "High Cpu"
    assert (alert["metric"], alert["comparison"], alert["threshold"]) == ("cpu_usage_percent", ">", 80.0)
    assert alert["current_value"] == 93.0
    assert alert["severity"] == "high"
    assert alert["labels"] == {"host": "gw-1"}
    assert alert["acknowledged_by"] is None
    assert alert["silenced"] is False
    assert "triggered_at" in alert and "events" not in alert


def test_alert_list_filters(client_for, users):
    cpu, disk = make_rule("cpu"), make_rule("disk", severity="critical")
    gateway = MonitoringTarget.objects.create(name="Gateway", slug="gw")
    active = make_alert(cpu, "a", target=gateway)
    acked = make_alert(cpu, "b", state=AlertState.ACKNOWLEDGED, labels={"target": "gw"})
    pending = make_alert(disk, "c", state=AlertState.PENDING, severity="critical")
    old = make_alert(disk, "d", state=AlertState.RESOLVED, severity="critical")
    Alert.objects.filter(pk=old.pk).update(
        resolved_at=timezone.now() - timedelta(days=3),
        updated_at=timezone.now() - timedelta(days=3),
        pending_since=timezone.now() - timedelta(days=4),
    )
    client = client_for("viewer")

    def ids(query: str) -> set[int]:
        response = client.get(f"/api/alerts?{query}")
        assert response.status_code == 200, response.content
        return {a["id"] for a in response.json()["alerts"]}

    assert ids("status=active") == {active.pk}
    assert ids("status=active,acknowledged") == {active.pk, acked.pk}
    assert ids("status=firing") == {active.pk, acked.pk}
    assert ids("severity=critical") == {pending.pk, old.pk}
    assert ids(f"rule={disk.pk}") == {pending.pk, old.pk}
    assert ids("rule=cpu") == {active.pk, acked.pk}
    assert ids("target=gw") == {active.pk, acked.pk}
    assert ids("hours=24") == {active.pk, acked.pk, pending.pk}
    since = (timezone.now() - timedelta(days=5)).isoformat()
    assert ids(f"since={since.replace('+', '%2B')}") == {active.pk, acked.pk, pending.pk, old.pk}
    until = (timezone.now() - timedelta(days=2)).isoformat()
    assert ids(f"until={until.replace('+', '%2B')}") == {old.pk}


def test_alert_list_ordering(client_for, users):
    rule = make_rule("cpu")
    low = make_alert(rule, "l", severity="low")
    critical = make_alert(rule, "c", severity="critical")
    pending = make_alert(rule, "p", state=AlertState.PENDING, severity="medium")
    Alert.objects.filter(pk=low.pk).update(fired_at=timezone.now() - timedelta(hours=2))
    client = client_for("viewer")

    def order(ordering: str) -> list[int]:
        return [a["id"] for a in client.get(f"/api/alerts?ordering={ordering}").json()["alerts"]]

    assert order("-severity") == [critical.pk, pending.pk, low.pk]
    assert order("severity") == [low.pk, pending.pk, critical.pk]
    assert order("triggered_at") == [low.pk, critical.pk, pending.pk]  # never fired: last
    assert order("-triggered_at") == [critical.pk, low.pk, pending.pk]
    assert order("-created_at") == [pending.pk, critical.pk, low.pk]


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=burning", "status"), ("severity=huge", "severity"), ("since=yesterday", "since"), ("hours=0", "hours")],
)
def test_alert_list_refuses_bad_filters_naming_the_field(client_for, world, query, field):
    response = client_for("viewer").get(f"/api/alerts?{query}")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_alert_list_paginates_with_count_and_next(client_for, world):
    for n in range(4):
        make_alert(world["rule"], f"more-{n}", state=AlertState.RESOLVED)
    client = client_for("viewer")

    first = client.get("/api/alerts?limit=2").json()
    assert first["count"] == 5
    assert len(first["alerts"]) == 2
    assert "offset=2" in first["next"]
    last = client.get("/api/alerts?limit=2&offset=4").json()
    assert len(last["alerts"]) == 1
    assert last["next"] is None
    seen = {a["id"] for a in first["alerts"]} | {a["id"] for a in last["alerts"]}
    assert len(seen) == 3


@pytest.mark.parametrize("rows", [2, 40])
def test_alert_list_query_count_is_constant(client_for, users, django_assert_max_num_queries, rows):
    gateway = MonitoringTarget.objects.create(name="Gateway", slug="gw")
    for n in range(rows):
        rule = make_rule(f"rule-{n}")
        make_alert(rule, acknowledged_by=users["operator"], target=gateway, state=AlertState.ACKNOWLEDGED)
    client = client_for("viewer")
    with django_assert_max_num_queries(6):
        response = client.get("/api/alerts")
    assert len(response.json()["alerts"]) == rows
    assert response.json()["alerts"][0]["acknowledged_by"] == "operator"


def test_alert_detail_has_its_event_history(client_for, world):
    alert = world["alert"]
    AlertEvent.objects.create(alert=alert, from_state="", to_state=AlertState.PENDING, value=85.0)
    AlertEvent.objects.create(alert=alert, from_state=AlertState.PENDING, to_state=AlertState.ACTIVE, value=93.0)

    body = client_for("viewer").get(f"/api/alerts/{alert.pk}").json()

    assert body["success"] is True
    assert body["alert"]["id"] == alert.pk
    assert [(e["from_state"], e["to_state"], e["actor"]) for e in body["alert"]["events"]] == [
        ("", "pending", "engine"),
        ("pending", "active", "engine"),
    ]


def test_unknown_alert_is_404_in_the_envelope(client_for, world):
    for method, path in [("get", "/api/alerts/999999"), ("post", "/api/alerts/999999/acknowledge")]:
        response = getattr(client_for("operator"), method)(path, {}, format="json")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


# --- Acknowledge and resolve ------------------------------------------------------------------------


def test_acknowledge_records_state_event_and_audit(client_for, world, users):
    alert = world["alert"]

    response = client_for("operator").post(
        f"/api/alerts/{alert.pk}/acknowledge", {"acknowledged_by": "john.doe", "note": "looking"}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["alert"]["status"] == "acknowledged"
    assert body["alert"]["acknowledged_by"] == "operator"
    assert body["message"] == f"Alert {alert.pk} acknowledged"
    event = AlertEvent.objects.get(alert=alert)
    assert (event.actor, event.actor_name, event.note) == (users["operator"], "john.doe", "looking")
    entry = AuditLogEntry.objects.get(action=AuditAction.ACKNOWLEDGE)
    assert (entry.source, entry.actor, entry.api_key_name, entry.ip) == (
        AuditSource.API,
        users["operator"],
        "operator-key",
        "127.0.0.1",
    )


def test_acknowledge_with_expiry(client_for, world):
    expires = timezone.now() + timedelta(hours=1)
    response = client_for("operator").post(
        f"/api/alerts/{world['alert'].pk}/acknowledge", {"expires_at": expires.isoformat()}, format="json"
    )
    assert response.status_code == 200
    world["alert"].refresh_from_db()
    assert abs(world["alert"].acknowledgement_expires_at - expires) < timedelta(seconds=1)

    past = client_for("operator").post(
        f"/api/alerts/{make_alert(world['rule'], 'x').pk}/acknowledge",
        {"expires_at": (timezone.now() - timedelta(hours=1)).isoformat()},
        format="json",
    )
    assert past.status_code == 400
    assert "expires_at" in past.json()["error"]["details"]


def test_acknowledging_a_resolved_alert_is_409(client_for, world):
    alert = make_alert(world["rule"], "gone", state=AlertState.RESOLVED)

    response = client_for("operator").post(f"/api/alerts/{alert.pk}/acknowledge", {}, format="json")

    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "conflict",
        "message": f"alert {alert.pk} is resolved; only firing alerts can be acknowledged",
        "details": {},
    }
    assert not AuditLogEntry.objects.exists()


def test_resolve_closes_the_alert_and_pending_is_409(client_for, world):
    response = client_for("operator").post(
        f"/api/alerts/{world['alert'].pk}/resolve", {"resolved_by": "jo"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["alert"]["status"] == "resolved"
    assert response.json()["alert"]["resolved_by"] == "operator"
    assert AuditLogEntry.objects.filter(action=AuditAction.RESOLVE, source=AuditSource.API).count() == 1

    pending = make_alert(world["rule"], "p", state=AlertState.PENDING)
    refused = client_for("operator").post(f"/api/alerts/{pending.pk}/resolve", {}, format="json")
    assert refused.status_code == 409
    assert "is pending" in refused.json()["error"]["message"]


def test_bad_action_body_names_the_field(client_for, world):
    response = client_for("operator").post(
        f"/api/alerts/{world['alert'].pk}/acknowledge", {"acknowledged_by": "x" * 151}, format="json"
    )
    assert response.status_code == 400
    assert "acknowledged_by" in response.json()["error"]["details"]


# --- Alert rules ------------------------------------------------------------------------------------


def test_rule_list_shape_and_query_count(client_for, django_assert_max_num_queries):
    email = NotificationChannel.objects.create(name="Email", key="email", kind="email")
    for n in range(30):
        rule = make_rule(f"r-{n:02}")
        rule.channels.add(email)
        Silence.objects.create(rule=rule, ends_at=timezone.now() + timedelta(hours=1))
    client = client_for("viewer")

    with django_assert_max_num_queries(8):
        body = client.get("/api/alert-rules?limit=50").json()

    assert body["count"] == 30
    rule = body["rules"][0]
    assert rule["key"] == "r-00"
    assert rule["channels"] == ["email"]
    assert rule["silenced_until"] is not None
    assert set(rule) >= {"id", "name", "metric", "comparison", "threshold", "duration", "severity", "enabled"}


def test_create_rule_with_channels_by_key_warns_about_an_unseen_metric(client_for, users):
    NotificationChannel.objects.create(name="Slack", key="slack", kind="slack")
    body = {
        "name": "Service Down",
        "metric": "service_up",
        "comparison": "<",
        "threshold": 1,
        "duration": 60,
        "severity": "critical",
        "channels": ["slack"],
        "matchers": {"env": "prod"},
    }

    response = client_for("admin").post("/api/alert-rules", body, format="json")

    assert response.status_code == 201, response.content
    created = response.json()
    assert created["rule"]["key"] == "service-down"
    assert created["rule"]["channels"] == ["slack"]
    assert created["warnings"] == [
        "No series of metric 'service_up' has been stored yet; the rule matches nothing until one is."
    ]
    rule = AlertRule.objects.get(key="service-down")
    assert rule.matchers == {"env": "prod"}
    entry = AuditLogEntry.objects.get(object_type="alerts.alertrule")
    assert (entry.action, entry.actor, entry.after["metric"]) == (AuditAction.CREATE, users["admin"], "service_up")

    Series.objects.create(name="service_up", labels={}, fingerprint="f1")
    again = client_for("admin").post("/api/alert-rules", {**body, "key": "svc-2"}, format="json")
    assert again.json()["warnings"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"comparison": "=>"}, "comparison"),
        ({"duration": -1}, "duration"),
        ({"severity": "urgent"}, "severity"),
        ({"matchers": {"env": 1}}, "matchers"),
        ({"matchers": ["env"]}, "matchers"),
        ({"channels": ["pager"]}, "channels"),
        ({"threshold": "NaN"}, "threshold"),
        ({"key": "high-cpu"}, "key"),
        ({"metric": None}, "metric"),
    ],
)
def test_rule_validation_names_the_field(client_for, world, change, field):
    body = {"name": "Disk", "metric": "disk_used", "comparison": ">", "threshold": 90, **change}
    response = client_for("admin").post("/api/alert-rules", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert not AlertRule.objects.filter(name="Disk").exists()


def test_update_rule_audits_before_and_after(client_for, world):
    rule = world["rule"]
    response = client_for("admin").patch(f"/api/alert-rules/{rule.pk}", {"threshold": 95}, format="json")
    assert response.status_code == 200
    assert response.json()["rule"]["threshold"] == 95.0
    entry = AuditLogEntry.objects.get(action=AuditAction.UPDATE)
    assert (entry.before["threshold"], entry.after["threshold"]) == (80.0, 95.0)


def test_deleting_a_rule_with_alerts_is_409(client_for, world):
    response = client_for("admin").delete(f"/api/alert-rules/{world['rule'].pk}")
    assert response.status_code == 409
    assert "disable the rule instead" in response.json()["error"]["message"]
    assert AlertRule.objects.filter(pk=world["rule"].pk).exists()
    assert not AuditLogEntry.objects.exists()


def test_delete_rule_without_alerts_audits(client_for, users):
    rule = make_rule("lonely")
    response = client_for("admin").delete(f"/api/alert-rules/{rule.pk}")
    assert response.status_code == 200
    assert not AlertRule.objects.filter(pk=rule.pk).exists()
    entry = AuditLogEntry.objects.get(action=AuditAction.DELETE)
    assert (entry.object_id, entry.object_repr) == (str(rule.pk), "Lonely")


def test_silence_rule_endpoint(client_for, world):
    response = client_for("operator").post(
        f"/api/alert-rules/{world['rule'].pk}/silence", {"duration_hours": 1.5}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == f"Rule {world['rule'].pk} silenced for 1.5 hours"
    assert body["silence"]["rule"] == world["rule"].pk
    assert body["silence"]["status"] == "active"
    world["alert"].refresh_from_db()
    assert world["alert"].silenced is True
    rule = client_for("viewer").get(f"/api/alert-rules/{world['rule'].pk}").json()["rule"]
    assert rule["silenced_until"] == body["silence"]["ends_at"]


@pytest.mark.parametrize("hours", [0, -2, "soon", 10**9, None])
def test_silence_rule_refuses_bad_durations(client_for, world, hours):
    response = client_for("operator").post(
        f"/api/alert-rules/{world['rule'].pk}/silence", {"duration_hours": hours}, format="json"
    )
    assert response.status_code == 400
    assert "duration_hours" in response.json()["error"]["details"]
    assert not Silence.objects.exists()


def test_silence_unknown_rule_is_404(client_for, world):
    response = client_for("operator").post("/api/alert-rules/99999/silence", {"duration_hours": 1}, format="json")
    assert response.status_code == 404


def test_disable_closes_alerts_and_enable_reverses(client_for, world):
    rule = world["rule"]
    response = client_for("admin").post(f"/api/alert-rules/{rule.pk}/disable")
    assert response.status_code == 200
    assert response.json()["rule"]["enabled"] is False
    world["alert"].refresh_from_db()
    assert world["alert"].state == AlertState.RESOLVED

    assert client_for("admin").post(f"/api/alert-rules/{rule.pk}/enable").json()["rule"]["enabled"] is True
    actions = list(AuditLogEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == [AuditAction.DISABLE, AuditAction.ENABLE]


# --- Silences ------------------------------------------------------------------------------------------


def test_create_silence_by_matchers(client_for, world, users):
    body = {
        "matchers": [{"name": "host", "op": "=~", "value": "gw-.*"}],
        "duration_hours": 2,
        "comment": "firmware rollout",
    }
    response = client_for("operator").post("/api/silences", body, format="json")

    assert response.status_code == 201, response.content
    silence = response.json()["silence"]
    assert silence["matchers"] == [{"name": "host", "op": "=~", "value": "gw-.*"}]
    assert silence["created_by"] == "operator"
    assert silence["status"] == "active"
    world["alert"].refresh_from_db()
    assert world["alert"].silenced is True
    assert AuditLogEntry.objects.filter(action=AuditAction.SILENCE, actor=users["operator"]).count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"matchers": [{"name": "host", "op": "=~", "value": "gw-[0-9"}], "duration_hours": 1}, "matchers"),
        ({"matchers": [{"name": "host", "op": "~", "value": "x"}], "duration_hours": 1}, "matchers"),
        ({"matchers": [], "duration_hours": 1}, "matchers"),
        ({"matchers": [{"name": "host", "value": "x"}]}, "ends_at"),
        ({"rule": 99999, "duration_hours": 1}, "rule"),
        (
            {"matchers": [{"name": "h", "value": "x"}], "duration_hours": 1, "ends_at": "2030-01-01T00:00Z"},
            "duration_hours",
        ),
        (
            {
                "matchers": [{"name": "h", "value": "x"}],
                "starts_at": "2030-01-02T00:00Z",
                "ends_at": "2030-01-01T00:00Z",
            },
            "ends_at",
        ),
    ],
)
def test_create_silence_refuses_bad_input(client_for, world, body, field):
    response = client_for("operator").post("/api/silences", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert not Silence.objects.exists()


def test_silence_list_filters_by_status(client_for, world, django_assert_max_num_queries):
    now = timezone.now()
    active = Silence.objects.create(rule=world["rule"], ends_at=now + timedelta(hours=1))
    expired = Silence.objects.create(rule=world["rule"], starts_at=now - timedelta(hours=2), ends_at=now)
    pending = Silence.objects.create(
        rule=world["rule"], starts_at=now + timedelta(hours=1), ends_at=now + timedelta(hours=2)
    )
    client = client_for("viewer")

    with django_assert_max_num_queries(6):
        body = client.get("/api/silences").json()
    assert body["count"] == 3
    assert {s["id"]: s["status"] for s in body["silences"]} == {
        active.pk: "active",
        expired.pk: "expired",
        pending.pk: "pending",
    }
    assert [s["id"] for s in client.get("/api/silences?status=pending").json()["silences"]] == [pending.pk]


def test_delete_silence_expires_it_once(client_for, world):
    silence = Silence.objects.create(rule=world["rule"], ends_at=timezone.now() + timedelta(hours=1))
    client = client_for("operator")

    response = client.delete(f"/api/silences/{silence.pk}")
    assert response.status_code == 200
    assert response.json()["silence"]["status"] == "expired"
    assert Silence.objects.filter(pk=silence.pk).exists()  # kept as history

    again = client.delete(f"/api/silences/{silence.pk}")
    assert again.status_code == 409
    assert client.delete("/api/silences/99999").status_code == 404
