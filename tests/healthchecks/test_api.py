"""The health check API: roles on every route, CRUD with validation and audit, on-demand
runs, heartbeats, targets with their health and history, and query counts."""

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from healthchecks.choices import HealthStatus
from healthchecks.models import HealthCheck, HealthCheckResult
from monitoring.choices import AuditAction, AuditSource
from monitoring.models import AuditLogEntry, MonitoringTarget

pytestmark = pytest.mark.django_db

ROLES = (None, "norole", "viewer", "operator", "admin")
READ = {None: 401, "norole": 403, "viewer": 200, "operator": 200, "admin": 200}
OPERATE = {None: 401, "norole": 403, "viewer": 403, "operator": 200, "admin": 200}
CONFIGURE = {None: 401, "norole": 403, "viewer": 403, "operator": 403, "admin": 200}


@pytest.fixture
def world(users, tcp_listener):
    host, port = tcp_listener
    target = MonitoringTarget.objects.create(name="Database", slug="database", endpoint=f"{host}:{port}")
    check = HealthCheck.objects.create(
        name="Database Health", key="database_health", kind="tcp", target=target, config={}
    )
    beat = HealthCheck.objects.create(name="Gateway 7", key="gw-7", kind="heartbeat", period=60, grace=30)
    return {"target": target, "check": check, "beat": beat}


def new_check_body(**extra) -> dict:
    return {"name": "Edge API", "key": "edge-api", "kind": "http", "config": {"url": "http://127.0.0.1:9/h"}, **extra}


ROUTES = [
    ("get", "/api/health-checks", None, READ, 200),
    ("get", "/api/health-checks/{check}", None, READ, 200),
    ("post", "/api/health-checks", new_check_body(), CONFIGURE, 201),
    ("patch", "/api/health-checks/{check}", {"interval": 30}, CONFIGURE, 200),
    ("put", "/api/health-checks/{check}", new_check_body(key="database_health"), CONFIGURE, 200),
    ("delete", "/api/health-checks/{check}", None, CONFIGURE, 200),
    ("post", "/api/health-checks/run", {"check_ids": ["{check}"]}, OPERATE, 200),
    ("get", "/api/targets", None, READ, 200),
    ("get", "/api/targets/{target}/health", None, READ, 200),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "expected", "ok_status"), ROUTES)
def test_role_matrix(client_for, world, role, method, path, body, expected, ok_status):
    ids = {"check": world["check"].pk, "target": world["target"].pk}
    url = path.format(**ids)
    if body is not None:
        body = {k: ([ids["check"]] if v == ["{check}"] else v) for k, v in body.items()}
    response = getattr(client_for(role), method)(url, body, format="json")
    want = ok_status if expected[role] == 200 else expected[role]
    assert response.status_code == want, response.content
    assert response.json()["success"] is (want < 400)


# --- read ------------------------------------------------------------------------------------------


def test_list_shows_status_and_last_result_in_constant_queries(client_for, world, django_assert_max_num_queries):
    now = timezone.now()
    for i in range(30):
        check = HealthCheck.objects.create(name=f"c{i}", key=f"c{i}", kind="tcp", target=world["target"])
        result = HealthCheckResult.objects.create(
            health_check=check, status=HealthStatus.HEALTHY, response_time=0.01, message="ok", checked_at=now
        )
        HealthCheck.objects.filter(pk=check.pk).update(last_result=result, status=HealthStatus.HEALTHY)
    client = client_for("viewer")
    with django_assert_max_num_queries(8):
        response = client.get("/api/health-checks")
    body = response.json()
    assert body["count"] == 32
    item = next(c for c in body["health_checks"] if c["key"] == "c3")
    assert item["status"] == "healthy"
    assert item["target"] == "database" and item["target_name"] == "Database"
    assert item["last_result"]["message"] == "ok" and item["last_result"]["response_time"] == 0.01


def test_list_filters(client_for, world):
    client = client_for("viewer")
    assert [c["key"] for c in client.get("/api/health-checks?kind=heartbeat").json()["health_checks"]] == ["gw-7"]
    assert [c["key"] for c in client.get("/api/health-checks?target=database").json()["health_checks"]] == [
        "database_health"
    ]
    assert client.get("/api/health-checks?status=bogus").status_code == 400


def test_secrets_in_config_and_the_ping_url_are_for_admins_only(client_for, world):
    HealthCheck.objects.create(
        name="Secret API",
        key="secret-api",
        kind="http",
        config={"url": "http://127.0.0.1:9/", "headers": {"Authorization": "Bearer s3cret"}},
    )
    viewer = {c["key"]: c for c in client_for("viewer").get("/api/health-checks").json()["health_checks"]}
    admin = {c["key"]: c for c in client_for("admin").get("/api/health-checks").json()["health_checks"]}
    assert viewer["secret-api"]["config"]["headers"]["Authorization"] == "********"
    assert admin["secret-api"]["config"]["headers"]["Authorization"] == "Bearer s3cret"
    assert viewer["gw-7"]["ping_url"] is None
    assert admin["gw-7"]["ping_url"].endswith(f"/api/heartbeat/{world['beat'].ping_uuid}")


# --- write -----------------------------------------------------------------------------------------


def test_create_refuses_an_invalid_check_with_the_reasons(client_for, world):
    client = client_for("admin")
    bad_url = client.post("/api/health-checks", new_check_body(config={"url": "htp:/x"}), format="json")
    assert bad_url.status_code == 400
    assert bad_url.json()["error"]["details"]["config"] == ["url 'htp:/x' is not a valid http(s) URL"]
    missing = client.post(
        "/api/health-checks",
        new_check_body(kind="custom", config={"command": "/usr/local/bin/check_script.sh"}),
        format="json",
    )
    assert missing.status_code == 400
    assert missing.json()["error"]["details"]["config"] == [
        "custom command '/usr/local/bin/check_script.sh' does not exist or is not executable"
    ]
    assert not HealthCheck.objects.filter(key="edge-api").exists()


def test_create_writes_an_audit_entry(client_for, world):
    response = client_for("admin").post("/api/health-checks", new_check_body(target="database"), format="json")
    assert response.status_code == 201
    created = response.json()["health_check"]
    assert created["target"] == "database" and created["status"] == "unknown"
    entry = AuditLogEntry.objects.get(action=AuditAction.CREATE, object_type="healthchecks.healthcheck")
    assert entry.source == AuditSource.API and entry.actor_name == "admin" and entry.api_key_name == "admin-key"
    assert entry.object_id == str(created["id"]) and entry.after["config"] == {"url": "http://127.0.0.1:9/h"}


def test_update_validates_against_the_target_endpoint_and_audits_the_change(client_for, world):
    client = client_for("admin")
    check = world["check"]
    cleared = client.patch(f"/api/health-checks/{check.pk}", {"target": None}, format="json")
    assert cleared.status_code == 400  # a tcp check needs a host: its target gave it one
    assert "host is required" in cleared.json()["error"]["details"]["config"][0]
    changed = client.patch(f"/api/health-checks/{check.pk}", {"failure_threshold": 3}, format="json")
    assert changed.status_code == 200 and changed.json()["health_check"]["failure_threshold"] == 3
    entry = AuditLogEntry.objects.get(action=AuditAction.UPDATE)
    assert (entry.before, entry.after) == ({"failure_threshold": 1}, {"failure_threshold": 3})
    disabled = client.patch(f"/api/health-checks/{check.pk}", {"enabled": False}, format="json")
    assert disabled.status_code == 200
    assert AuditLogEntry.objects.filter(action=AuditAction.DISABLE, object_id=str(check.pk)).exists()


def test_delete_is_audited(client_for, world):
    check = world["check"]
    assert client_for("admin").delete(f"/api/health-checks/{check.pk}").json() == {"success": True, "deleted": check.pk}
    assert not HealthCheck.objects.filter(pk=check.pk).exists()
    entry = AuditLogEntry.objects.get(action=AuditAction.DELETE)
    assert entry.object_repr == "Database Health" and entry.before["key"] == "database_health"


def test_unknown_check_is_404(client_for, world):
    response = client_for("viewer").get("/api/health-checks/987654")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


# --- run -------------------------------------------------------------------------------------------


def test_run_returns_results_and_audits(client_for, world):
    response = client_for("operator").post("/api/health-checks/run", {"check_ids": [world["check"].pk]}, format="json")
    body = response.json()
    assert response.status_code == 200
    [result] = body["results"]
    assert result["check_id"] == world["check"].pk and result["status"] == "healthy"
    assert result["message"].startswith("connected to 127.0.0.1:")
    assert body["queued"] == [] and body["skipped"] == []
    entry = AuditLogEntry.objects.get(action=AuditAction.RUN)
    assert entry.actor_name == "operator" and entry.after == {"check_ids": [world["check"].pk]}


def test_run_all_without_a_body(client_for, world):
    response = client_for("operator").post("/api/health-checks/run")
    assert response.status_code == 200
    statuses = {r["check_id"]: r["status"] for r in response.json()["results"]}
    # The heartbeat has never pinged but is new: unknown, waiting for its first ping.
    assert statuses == {world["check"].pk: "healthy", world["beat"].pk: "unknown"}


def test_run_rejects_a_bad_body(client_for, world):
    response = client_for("operator").post("/api/health-checks/run", {"check_ids": "all"}, format="json")
    assert response.status_code == 400 and "check_ids" in response.json()["error"]["details"]


# --- heartbeat -------------------------------------------------------------------------------------


def test_heartbeat_ping_needs_no_key_and_marks_the_check_up(api_client, world):
    beat = world["beat"]
    response = api_client.post(f"/api/heartbeat/{beat.ping_uuid}", "all good", content_type="text/plain")
    assert response.status_code == 200
    assert response.json() == {"success": True, "check": "gw-7", "ping": "success", "status": "healthy"}
    beat.refresh_from_db()
    assert beat.last_ping_kind == "success" and beat.last_result.details["body"] == "all good"
    assert api_client.get(f"/api/heartbeat/{beat.ping_uuid}").status_code == 200


def test_heartbeat_fail_marks_the_check_down_at_once(api_client, world):
    beat = world["beat"]
    api_client.get(f"/api/heartbeat/{beat.ping_uuid}")
    response = api_client.post(f"/api/heartbeat/{beat.ping_uuid}/fail", "disk full", content_type="text/plain")
    assert response.json()["status"] == "critical"
    beat.refresh_from_db()
    assert beat.status == HealthStatus.CRITICAL
    assert "reported a failure" in beat.last_result.message and beat.last_result.details["body"] == "disk full"
    assert api_client.get(f"/api/heartbeat/{beat.ping_uuid}").json()["status"] == "healthy"


def test_heartbeat_late_is_found_by_the_scheduled_run(api_client, world):
    beat = world["beat"]
    api_client.get(f"/api/heartbeat/{beat.ping_uuid}")
    HealthCheck.objects.filter(pk=beat.pk).update(last_ping_at=timezone.now() - dt.timedelta(seconds=120))
    from healthchecks.services import run_checks_now

    [result] = run_checks_now(check_ids=[beat.pk]).results
    assert result.status == HealthStatus.CRITICAL and result.message.startswith("late: last ping 2 min ago")


def test_heartbeat_start_then_success_records_the_run_time(api_client, world):
    beat = world["beat"]
    assert api_client.post(f"/api/heartbeat/{beat.ping_uuid}/start").json()["ping"] == "start"
    assert not HealthCheckResult.objects.filter(health_check=beat).exists()
    api_client.post(f"/api/heartbeat/{beat.ping_uuid}")
    beat.refresh_from_db()
    assert beat.last_result.details["run_seconds"] >= 0


def test_heartbeat_success_pings_record_at_most_one_result_per_interval(api_client, world):
    beat = world["beat"]
    for _ in range(5):
        api_client.post(f"/api/heartbeat/{beat.ping_uuid}")
    assert HealthCheckResult.objects.filter(health_check=beat).count() == 1
    beat.refresh_from_db()
    assert beat.last_ping_at >= beat.last_result.checked_at


def test_heartbeat_unknown_uuid_is_404_even_with_a_bad_key(api_client, world):
    api_client.credentials(HTTP_X_API_KEY="not-a-key")
    response = api_client.get(f"/api/heartbeat/{uuid.uuid4()}")
    assert response.status_code == 404 and response.json()["success"] is False


# --- targets ---------------------------------------------------------------------------------------


def test_targets_list_their_health(client_for, world, django_assert_max_num_queries):
    HealthCheck.objects.filter(pk=world["check"].pk).update(status=HealthStatus.CRITICAL)
    MonitoringTarget.objects.create(name="Idle", slug="idle")
    with django_assert_max_num_queries(6):
        body = client_for("viewer").get("/api/targets").json()
    targets = {t["slug"]: t for t in body["targets"]}
    assert targets["database"]["status"] == "critical"
    assert targets["database"]["checks"] == {"total": 1, "healthy": 0, "warning": 0, "critical": 1, "unknown": 0}
    assert targets["idle"]["status"] == "unknown" and targets["idle"]["checks"]["total"] == 0


def test_target_health_history_and_uptime(client_for, world, django_assert_max_num_queries):
    check = world["check"]
    now = timezone.now()
    statuses = ["healthy"] * 6 + ["critical"] * 2 + ["unknown"]
    for i, status in enumerate(statuses):
        HealthCheckResult.objects.create(
            health_check=check, status=status, message=status, checked_at=now - dt.timedelta(minutes=10 * (i + 1))
        )
    HealthCheckResult.objects.create(health_check=check, status="critical", checked_at=now - dt.timedelta(hours=30))
    client = client_for("viewer")
    with django_assert_max_num_queries(8):
        body = client.get(f"/api/targets/{world['target'].pk}/health?hours=24").json()
    [history] = body["health"]["checks"]
    assert body["target"]["slug"] == "database"
    assert history["results_count"] == 9
    assert history["uptime_percentage"] == 75.0  # 6 up of 8 judged; unknown says nothing
    assert body["health"]["uptime_percentage"] == 75.0
    assert [r["status"] for r in history["results"]] == statuses  # newest first
    by_slug = client.get("/api/targets/database/health?hours=1&limit=2").json()
    assert [r["message"] for r in by_slug["health"]["checks"][0]["results"]] == ["healthy", "healthy"]
    assert by_slug["health"]["checks"][0]["results_count"] == 5


@pytest.mark.parametrize("query", ["hours=0", "hours=abc", "hours=nan", "hours=99999", "limit=-1"])
def test_target_health_rejects_bad_parameters(client_for, world, query):
    response = client_for("viewer").get(f"/api/targets/database/health?{query}")
    assert response.status_code == 400


def test_target_health_of_an_unknown_target_is_404(client_for, world):
    assert client_for("viewer").get("/api/targets/nope/health").status_code == 404
