"""CRUD of each configurable resource through one shared helper: each resource declares its
data, and the helper creates, reads, changes and deletes it with each role, checking the
envelope, the roles and the audit trail. Then what is particular to each resource."""

import json
from dataclasses import dataclass, field

import pytest

from monitoring.models import ApiKey, AuditLogEntry, MonitoringTarget
from notifications.models import NotificationChannel
from notifications.secrets import get_channel_secrets


@dataclass(frozen=True)
class Resource:
    path: str
    item: str  # the key of the object in a detail answer
    object_type: str  # as the audit log names it
    create: dict
    change: dict  # a PATCH, and what it changes
    setup: dict = field(default_factory=dict)  # other objects to create first: path -> body
    delete_answers: str = "deleted"


EMAIL = {
    "key": "ops-mail",
    "name": "Ops mail",
    "kind": "email",
    "config": {"smtp_server": "127.0.0.1", "from_email": "mon@example.net", "recipients": ["ops@example.net"]},
}
RESOURCES = [
    Resource(
        "/api/targets",
        "target",
        "monitoring.monitoringtarget",
        {"slug": "gw-1", "name": "Gateway 1", "kind": "device", "labels": {"site": "north"}},
        {"name": "Gateway one"},
    ),
    Resource(
        "/api/notification-channels",
        "channel",
        "notifications.notificationchannel",
        {**EMAIL, "secrets": {"password": "hunter2-smtp"}},
        {"enabled": False},
    ),
    Resource(
        "/api/escalation-policies",
        "policy",
        "alerts.escalationpolicy",
        {"key": "night", "name": "Night", "steps": [{"after_minutes": 0, "channels": ["ops-mail"]}]},
        {"repeat": True},
        setup={"/api/notification-channels": EMAIL},
    ),
    Resource(
        "/api/alert-rules",
        "rule",
        "alerts.alertrule",
        {"name": "CPU high", "metric": "cpu_usage_percent", "comparison": ">", "threshold": 90},
        {"threshold": 95.0},
        delete_answers="message",
    ),
    Resource(
        "/api/health-checks",
        "health_check",
        "healthchecks.healthcheck",
        {"key": "web", "name": "Web", "kind": "http", "config": {"url": "http://127.0.0.1:9/"}},
        {"interval": 120},
    ),
    Resource(
        "/api/api-keys",
        "api_key",
        "monitoring.apikey",
        {"name": "device-17", "user": "viewer", "read_only": True},
        {"name": "device-17b"},
        delete_answers="api_key",
    ),
]


def exercise_crud(resource: Resource, call) -> dict:
    """Create, read, change and delete `resource` with each role; the created object."""
    for path, body in resource.setup.items():
        assert call("admin", "POST", path, body).status_code == 201
    for caller in ("viewer", "operator"):
        assert call(caller, "POST", resource.path, resource.create).status_code == 403
    created = call("admin", "POST", resource.path, resource.create)
    assert created.status_code == 201, created.json()
    assert created.json()["success"] is True
    item = created.json()[resource.item]
    detail = f"{resource.path}/{item['id']}"
    reader = "admin" if resource.path == "/api/api-keys" else "viewer"
    read = call(reader, "GET", detail)
    assert read.status_code == 200 and read.json()[resource.item]["id"] == item["id"]
    listed = call(reader, "GET", resource.path).json()
    assert any(entry["id"] == item["id"] for entry in next(v for v in listed.values() if isinstance(v, list)))
    assert call("operator", "PATCH", detail, resource.change).status_code == 403
    changed = call("admin", "PATCH", detail, resource.change)
    assert changed.status_code == 200, changed.json()
    for name, value in resource.change.items():
        assert changed.json()[resource.item][name] == value
    assert call("operator", "DELETE", detail).status_code == 403
    deleted = call("admin", "DELETE", detail)
    assert deleted.status_code == 200 and resource.delete_answers in deleted.json()
    actions = list(
        AuditLogEntry.objects.filter(object_type=resource.object_type, object_id=str(item["id"]))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions[0] == "create" and actions[-1] in ("delete", "revoke")
    assert {"update", "enable", "disable"} & set(actions[1:-1])
    assert AuditLogEntry.objects.filter(object_id=str(item["id"]), source="api", actor_name="admin").exists()
    return item


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.path)
def test_resource_crud_by_role(resource, call):
    item = exercise_crud(resource, call)
    after = call("admin", "GET", f"{resource.path}/{item['id']}")
    if resource.path == "/api/api-keys":
        assert after.json()["api_key"]["state"] == "revoked"  # a revoked key stays listed
    else:
        assert after.status_code == 404 and after.json()["error"]["code"] == "not_found"


def test_channel_secrets_are_write_only_and_encrypted(call):
    body = {**EMAIL, "config": {**EMAIL["config"], "password": "in-config-by-mistake"}}
    created = call("admin", "POST", "/api/notification-channels", body)
    assert created.status_code == 201
    assert "in-config-by-mistake" not in created.content.decode()
    channel_id = created.json()["channel"]["id"]
    assert created.json()["channel"]["secrets_stored"] == ["password"]
    assert "password" not in created.json()["channel"]["config"]
    row = NotificationChannel.objects.get(pk=channel_id)
    assert "in-config-by-mistake" not in row.secrets and "in-config-by-mistake" not in json.dumps(row.config)
    assert get_channel_secrets(row) == {"password": "in-config-by-mistake"}
    # A change without secrets keeps them; new ones are merged; nobody ever reads them back.
    changed = call("admin", "PATCH", f"/api/notification-channels/{channel_id}", {"secrets": {"password": "new-one"}})
    assert changed.status_code == 200 and "new-one" not in changed.content.decode()
    call("admin", "PATCH", f"/api/notification-channels/{channel_id}", {"name": "Mail"})
    assert get_channel_secrets(NotificationChannel.objects.get(pk=channel_id)) == {"password": "new-one"}
    for caller in ("viewer", "admin"):
        text = call(caller, "GET", f"/api/notification-channels/{channel_id}").content.decode()
        assert "new-one" not in text and "secrets_stored" in text
    assert "new-one" not in json.dumps(list(AuditLogEntry.objects.values("before", "after")))


def test_channel_needs_the_settings_of_its_kind(call):
    response = call("admin", "POST", "/api/notification-channels", {"key": "pd", "name": "PD", "kind": "pagerduty"})
    assert response.status_code == 400
    assert "integration_key" in response.json()["error"]["details"]["config"][0]


def test_api_key_is_shown_once_and_works_until_revoked(call, users):
    created = call("admin", "POST", "/api/api-keys", {"name": "grafana", "user": "operator"})
    assert created.status_code == 201
    plain, key_id = created.json()["key"], created.json()["api_key"]["id"]
    assert plain.startswith("mon_") and created.json()["api_key"]["role"] == "operator"
    assert plain not in call("admin", "GET", f"/api/api-keys/{key_id}").content.decode()
    assert plain not in call("admin", "GET", "/api/api-keys").content.decode()
    assert ApiKey.objects.get(pk=key_id).hashed_key != plain
    from rest_framework.test import APIClient

    client = APIClient(HTTP_X_API_KEY=plain)
    assert client.get("/api/status").status_code == 200
    assert call("admin", "DELETE", f"/api/api-keys/{key_id}").json()["api_key"]["state"] == "revoked"
    assert client.get("/api/status").status_code == 401


def test_api_keys_are_for_admins_only(call):
    for caller in ("viewer", "operator"):
        assert call(caller, "GET", "/api/api-keys").status_code == 403
    response = call("admin", "POST", "/api/api-keys", {"name": "x", "user": "nobody-by-this-name"})
    assert response.status_code == 400 and "user" in response.json()["error"]["details"]


def test_target_by_slug_parent_and_cycles(call):
    assert call("admin", "POST", "/api/targets", {"slug": "site", "name": "Site uplink"}).status_code == 201
    child = call("admin", "POST", "/api/targets", {"slug": "gw", "name": "Gateway", "parent": "site"})
    assert child.status_code == 201 and child.json()["target"]["parent"] == "site"
    assert call("viewer", "GET", "/api/targets/gw").json()["target"]["id"] == child.json()["target"]["id"]
    cycle = call("admin", "PATCH", "/api/targets/site", {"parent": "gw"})
    assert cycle.status_code == 400 and "parent" in cycle.json()["error"]["details"]
    taken = call("admin", "POST", "/api/targets", {"slug": "gw", "name": "Another"})
    assert taken.status_code == 400 and "slug" in taken.json()["error"]["details"]
    protected = call("admin", "DELETE", "/api/targets/site")
    assert protected.status_code == 409 and protected.json()["error"]["code"] == "conflict"
    assert MonitoringTarget.objects.filter(slug="site").exists()


def test_target_list_filters(call):
    call("admin", "POST", "/api/targets", {"slug": "db-1", "name": "Database", "kind": "database"})
    call("admin", "POST", "/api/targets", {"slug": "gw-1", "name": "Gateway", "kind": "device", "enabled": False})
    kinds = call("viewer", "GET", "/api/targets?kind=device").json()["targets"]
    assert [t["slug"] for t in kinds] == ["gw-1"]
    enabled = call("viewer", "GET", "/api/targets?enabled=true").json()["targets"]
    assert [t["slug"] for t in enabled] == ["db-1"]
    assert call("viewer", "GET", "/api/targets?search=data").json()["count"] == 1
    assert call("viewer", "GET", "/api/targets?kind=toaster").status_code == 400


def test_policy_steps_name_existing_channels(call):
    response = call(
        "admin",
        "POST",
        "/api/escalation-policies",
        {"key": "p", "name": "P", "steps": [{"after_minutes": 5, "channels": ["nope"]}]},
    )
    assert response.status_code == 400 and "steps" in response.json()["error"]["details"]
