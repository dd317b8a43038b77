"""The audit trail: one entry per change for each surface (admin, API with the key's name,
dashboard, CLI) and per log-in, failed log-in and log-out, with the client address; the log is
append-only (the ORM refuses, PostgreSQL's trigger refuses raw SQL, cleanup leaves it); the
hash chain names the first tampered row; the admin API and the JSON-lines export."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.utils import timezone

from healthchecks.choices import CheckKind
from healthchecks.models import HealthCheck
from monitoring.apikeys import create_api_key
from monitoring.audit import record_audit
from monitoring.choices import AuditAction, AuditSource, TargetKind
from monitoring.models import AuditLogEntry, AuditLogImmutableError, MonitoringTarget

from .servers import tcp_listener
from .tampering import TABLE, change_entry, remove_entry

pytestmark = pytest.mark.django_db

CHANGES = [AuditAction.CREATE, AuditAction.UPDATE, AuditAction.DELETE, AuditAction.RUN, AuditAction.REVOKE]


def logged_in(user, address: str = "198.51.100.7", page: str = "/admin/login/") -> Client:
    client = Client(REMOTE_ADDR=address)
    assert client.post(page, {"username": user.username, "password": "correct horse battery"}).status_code == 302
    return client


def change_entries():
    return AuditLogEntry.objects.filter(action__in=CHANGES).order_by("id")


# --- Every surface writes one entry -----------------------------------------------------------------


def test_an_admin_change_writes_one_entry(users):
    target = MonitoringTarget.objects.create(name="Router", slug="router", endpoint="10.0.0.1")
    client = logged_in(users["admin"])
    response = client.post(
        f"/admin/monitoring/monitoringtarget/{target.pk}/change/",
        {
            "name": "Core router",
            "slug": "router",
            "kind": TargetKind.HOST,
            "endpoint": "10.0.0.1",
            "check_interval": 60,
            "timeout": 10,
            "labels": "{}",
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content[:500]
    (entry,) = change_entries()
    assert (entry.source, entry.action, entry.actor_name, entry.ip) == (
        AuditSource.ADMIN,
        AuditAction.UPDATE,
        "admin",
        "198.51.100.7",
    )
    assert entry.before == {"name": "Router", "kind": TargetKind.SERVICE}
    assert entry.after == {"name": "Core router", "kind": TargetKind.HOST}


def test_an_api_write_with_a_key_writes_one_entry_naming_the_key(users, api_client):
    key = create_api_key(user=users["admin"], name="terraform").plain
    api_client.credentials(HTTP_X_API_KEY=key)
    response = api_client.post(
        "/api/health-checks",
        {"name": "Gateway", "key": "gateway", "kind": CheckKind.TCP, "config": {"host": "127.0.0.1", "port": 1}},
        format="json",
        REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 201, response.content
    (entry,) = change_entries()
    assert (entry.source, entry.action, entry.actor_name, entry.api_key_name, entry.ip, entry.object_repr) == (
        AuditSource.API,
        AuditAction.CREATE,
        "admin",
        "terraform",
        "203.0.113.9",
        "Gateway",
    )


def test_a_dashboard_action_writes_one_entry(users):
    with tcp_listener() as port:
        check = HealthCheck.objects.create(
            name="Broker", key="broker", kind=CheckKind.TCP, config={"host": "127.0.0.1", "port": port}, timeout=2
        )
        client = logged_in(users["operator"], "192.0.2.44", page="/login/")
        response = client.post(f"/health/{check.pk}/run", HTTP_ACCEPT="text/plain")
        assert response.status_code in (200, 302)
    (entry,) = change_entries()
    assert (entry.source, entry.action, entry.actor_name, entry.ip, entry.object_id) == (
        AuditSource.DASHBOARD,
        AuditAction.RUN,
        "operator",
        "192.0.2.44",
        str(check.pk),
    )


def test_a_cli_change_writes_one_entry(users):
    key = create_api_key(user=users["viewer"], name="old-ci").api_key
    call_command("revokeapikey", "--name", "old-ci", stdout=StringIO())
    (entry,) = change_entries()
    assert (entry.source, entry.action, entry.object_id) == (AuditSource.CLI, AuditAction.REVOKE, str(key.pk))
    assert entry.actor_name.endswith("(shell)")  # the OS account that ran the command


# --- Log-ins ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "source"), [("/login/", AuditSource.DASHBOARD), ("/admin/login/", AuditSource.ADMIN)])
def test_log_in_failed_log_in_and_log_out_write_one_entry_each(users, path, source):
    client = Client(REMOTE_ADDR="2001:db8::7")
    client.post(path, {"username": "admin", "password": "wrong"})
    client.post(path, {"username": "nobody", "password": "wrong"})
    client.post(path, {"username": "admin", "password": "correct horse battery"})
    client.post("/logout/" if source == AuditSource.DASHBOARD else "/admin/logout/")
    entries = list(AuditLogEntry.objects.order_by("id"))
    assert [(e.action, e.object_repr, e.actor_name, e.source, e.ip) for e in entries] == [
        (AuditAction.LOGIN_FAILED, "admin", "anonymous", source, "2001:db8::7"),
        (AuditAction.LOGIN_FAILED, "nobody", "anonymous", source, "2001:db8::7"),
        (AuditAction.LOGIN, "admin", "admin", source, "2001:db8::7"),
        (AuditAction.LOGOUT, "admin", "admin", source, "2001:db8::7"),
    ]
    assert not any("wrong" in json.dumps([e.before, e.after, e.object_repr]) for e in entries)


# --- Append-only --------------------------------------------------------------------------------------


def test_the_orm_has_no_way_to_change_or_delete_an_entry(users):
    entry = record_audit(actor=users["admin"], source=AuditSource.API, action=AuditAction.UPDATE, after={"n": 1})
    entry.actor_name = "someone else"
    with pytest.raises(AuditLogImmutableError):
        entry.save()
    with pytest.raises(AuditLogImmutableError):
        entry.delete()
    with pytest.raises(AuditLogImmutableError):
        AuditLogEntry.objects.filter(pk=entry.pk).update(actor_name="x")
    with pytest.raises(AuditLogImmutableError):
        AuditLogEntry.objects.all().delete()
    assert AuditLogEntry.objects.get().actor_name == "admin"


def test_the_database_refuses_raw_update_and_delete_on_postgresql(users):
    """On PostgreSQL the trigger refuses what bypasses the ORM; SQLite has no such trigger
    (its test runs flush tables with DELETE), so there only the ORM guards the table."""
    entry = record_audit(actor=users["admin"], source=AuditSource.API, action=AuditAction.UPDATE)
    statements = [f"UPDATE {TABLE} SET actor_name = 'forged' WHERE id = %s", f"DELETE FROM {TABLE} WHERE id = %s"]  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'monitoring_audit_log_append_only'"
            if connection.vendor == "postgresql"
            else "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
            [] if connection.vendor == "postgresql" else [TABLE],
        )
        triggers = cursor.fetchone()[0]
    if connection.vendor == "postgresql":
        assert triggers == 1
        for sql in statements:
            with (
                pytest.raises(IntegrityError, match="the audit log is append-only"),
                transaction.atomic(),
                connection.cursor() as cursor,
            ):
                cursor.execute(sql, [entry.pk])
        assert AuditLogEntry.objects.get().actor_name == "admin"
    else:
        assert triggers == 0


def test_deleting_a_user_writes_nothing_to_the_audit_log(users):
    entry = record_audit(actor=users["operator"], source=AuditSource.API, action=AuditAction.UPDATE)
    users["operator"].delete()  # would be refused on PostgreSQL if it set actor_id to NULL
    stored = AuditLogEntry.objects.get(pk=entry.pk)
    assert (stored.actor_name, stored.entry_hash) == ("operator", entry.entry_hash)


def test_cleanup_never_removes_audit_entries(users):
    long_ago = timezone.now() - timedelta(days=3650)
    old = record_audit(actor=users["admin"], source=AuditSource.API, action=AuditAction.UPDATE, at=long_ago)
    call_command("cleanup", "--days", "1", stdout=StringIO(), stderr=StringIO())
    assert AuditLogEntry.objects.filter(pk=old.pk).exists()
    assert AuditLogEntry.objects.count() == 2  # and the cleanup's own entry


# --- The hash chain ------------------------------------------------------------------------------------


def verify() -> str:
    out = StringIO()
    call_command("verify_audit_log", stdout=out)
    return out.getvalue()


def test_verify_audit_log_reports_the_first_tampered_entry(users):
    entries = [
        record_audit(actor=users["admin"], source=AuditSource.API, action=AuditAction.UPDATE, after={"n": n})
        for n in range(5)
    ]
    assert verify() == "The audit log's hash chain holds: 5 entries verified.\n"

    change_entry(entries[2].pk, after='{"n": 200}')
    change_entry(entries[4].pk, actor_name="mallory")
    with pytest.raises(CommandError) as broken:
        verify()
    assert broken.value.returncode == 1
    assert f"entry {entries[2].pk} " in str(broken.value)
    assert "its content does not match its hash" in str(broken.value)


def test_verify_audit_log_reports_a_removed_entry_at_the_next_one(users):
    entries = [record_audit(actor=None, source=AuditSource.CLI, action=AuditAction.UPDATE) for _ in range(4)]
    remove_entry(entries[1].pk)
    with pytest.raises(CommandError) as broken:
        verify()
    assert f"entry {entries[2].pk} " in str(broken.value)
    assert f"does not name entry {entries[0].pk}" in str(broken.value)


def test_verify_audit_log_reports_removed_first_entries(users):
    entries = [record_audit(actor=None, source=AuditSource.CLI, action=AuditAction.UPDATE) for _ in range(3)]
    remove_entry(entries[0].pk)
    with pytest.raises(CommandError, match=f"entry {entries[1].pk} .*links to an earlier one"):
        verify()


# --- Reading and exporting --------------------------------------------------------------------------


@pytest.fixture
def history(users):
    base = timezone.now() - timedelta(hours=3)
    return [
        record_audit(actor=users["admin"], source=AuditSource.ADMIN, action=AuditAction.CREATE, at=base),
        record_audit(
            actor=users["operator"],
            source=AuditSource.API,
            action=AuditAction.ACKNOWLEDGE,
            api_key_name="pager",
            at=base + timedelta(hours=1),
        ),
        record_audit(
            actor="anonymous",
            source=AuditSource.DASHBOARD,
            action=AuditAction.LOGIN_FAILED,
            ip="192.0.2.1",
            at=base + timedelta(hours=2),
        ),
    ]


def test_audit_log_api_is_for_admins(client_for, history):
    assert client_for(None).get("/api/audit-log").status_code == 401
    for role in ("viewer", "operator"):
        assert client_for(role).get("/api/audit-log").status_code == 403
    body = client_for("admin").get("/api/audit-log").json()
    assert body["count"] == 3
    assert [e["id"] for e in body["entries"]] == [e.pk for e in reversed(history)]
    assert body["entries"][0]["entry_hash"] == history[-1].entry_hash


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("source=api", [1]),
        ("action=create,login_failed", [2, 0]),
        ("actor=operator", [1]),
        ("api_key_name=pager", [1]),
        ("ip=192.0.2.1", [2]),
        ("limit=1&offset=1", [1]),
    ],
)
def test_audit_log_api_filters_and_pages(client_for, history, query, expected):
    body = client_for("admin").get(f"/api/audit-log?{query}").json()
    assert [e["id"] for e in body["entries"]] == [history[n].pk for n in expected]


def test_audit_log_api_filters_by_time_and_refuses_unknown_parameters(client_for, history):
    admin = client_for("admin")
    since = (history[1].at - timedelta(seconds=1)).isoformat()
    assert admin.get("/api/audit-log", {"since": since}).json()["count"] == 2
    assert admin.get("/api/audit-log", {"until": since}).json()["count"] == 1
    assert admin.get("/api/audit-log", {"sorce": "api"}).status_code == 400
    assert admin.get("/api/audit-log", {"source": "web"}).status_code == 400
    assert admin.get("/api/audit-log", {"since": "yesterday"}).status_code == 400


def test_export_audit_log_writes_json_lines_oldest_first(history, tmp_path):
    out = StringIO()
    call_command("export_audit_log", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["id"] for line in lines] == [entry.pk for entry in history]
    assert lines[1]["api_key_name"] == "pager"
    assert lines[1]["prev_hash"] == lines[0]["entry_hash"]

    path = tmp_path / "audit.jsonl"
    call_command("export_audit_log", "--source", "dashboard", "--output", str(path), stderr=StringIO())
    assert [json.loads(line)["action"] for line in path.read_text().splitlines()] == [AuditAction.LOGIN_FAILED]
    assert path.stat().st_mode & 0o777 == 0o600


def test_api_key_use_for_a_write_is_audited_but_a_read_is_not(client_for, users):
    before = AuditLogEntry.objects.count()
    assert client_for("admin").get("/api/health-checks").status_code == 200
    assert AuditLogEntry.objects.count() == before
