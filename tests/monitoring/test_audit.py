"""The audit log writer: secrets masked, entries chained by hash, tampering found at the
right row, appends from concurrent transactions kept in one chain."""

import threading
import time

import pytest
from django.db import OperationalError, connection, connections
from django.test import RequestFactory

from monitoring.apikeys import create_api_key
from monitoring.audit import (
    MASK,
    audit_request,
    changed_fields,
    client_ip,
    mask_secrets,
    record_audit,
    snapshot,
    verify_audit_chain,
)
from monitoring.choices import AuditAction, AuditSource
from monitoring.models import AuditLogEntry, MonitoringTarget
from tests.security.tampering import change_entry, remove_entry


def test_mask_secrets_hides_secret_values_and_keeps_slugs_readable():
    data = {
        "key": "high_cpu",
        "password": "hunter2",
        "smtp_password": "x",
        "integration_key": "pd-123",
        "hashed_key": "abc",
        "webhook_url": "https://hooks.example/T/B/X",
        "secrets": "v1:kid:blob",
        "ping_uuid": "5f0c",
        "api_key_name": "ci",
        "idempotency_key": "n-1",
        "config": {"headers": {"Authorization": "Bearer t", "X-Api-Key": "k", "Content-Type": "application/json"}},
        "items": [{"token": "t"}],
        "empty_password": "",
    }
    masked = mask_secrets(data)
    for name in ("password", "smtp_password", "integration_key", "hashed_key", "webhook_url", "secrets", "ping_uuid"):
        assert masked[name] == MASK, name
    assert masked["config"]["headers"] == {"Authorization": MASK, "X-Api-Key": MASK, "Content-Type": "application/json"}
    assert masked["items"] == [{"token": MASK}]
    assert masked["key"] == "high_cpu"
    assert masked["api_key_name"] == "ci"
    assert masked["idempotency_key"] == "n-1"
    assert masked["empty_password"] == ""  # nothing to hide, and "was it set?" stays visible


@pytest.mark.django_db
def test_entries_are_chained_and_the_chain_verifies(users):
    first = record_audit(actor=users["admin"], source=AuditSource.ADMIN, action=AuditAction.CREATE, object_type="x")
    second = record_audit(actor=None, source=AuditSource.SYSTEM, action=AuditAction.UPDATE, after={"a": 1})
    assert first.prev_hash == ""
    assert second.prev_hash == first.entry_hash
    assert second.actor_name == "system"
    assert verify_audit_chain() is None


@pytest.mark.django_db
def test_secrets_never_reach_the_stored_entry(users):
    entry = record_audit(
        actor=users["admin"],
        source=AuditSource.API,
        action=AuditAction.UPDATE,
        before={"password": "old-secret"},
        after={"password": "new-secret", "name": "mail"},
    )
    entry.refresh_from_db()
    assert entry.before == {"password": MASK}
    assert entry.after == {"password": MASK, "name": "mail"}


def _entries(users, count: int) -> list[AuditLogEntry]:
    return [
        record_audit(
            actor=users["admin"], source=AuditSource.ADMIN, action=AuditAction.UPDATE, after={"n": n}, ip="10.0.0.1"
        )
        for n in range(count)
    ]


@pytest.mark.django_db
def test_a_changed_entry_is_reported(users):
    entries = _entries(users, 4)
    change_entry(entries[2].pk, after='{"n": 99}')  # raw SQL: the ORM refuses to change entries
    assert verify_audit_chain() == entries[2]


@pytest.mark.django_db
def test_a_changed_hash_is_reported_at_the_changed_row(users):
    entries = _entries(users, 3)
    change_entry(entries[1].pk, actor_name="someone else", entry_hash="0" * 64)
    assert verify_audit_chain() == entries[1]


@pytest.mark.django_db
def test_a_removed_entry_is_reported_at_the_next_one(users):
    entries = _entries(users, 4)
    remove_entry(entries[1].pk)
    assert verify_audit_chain() == entries[2]


@pytest.mark.django_db
def test_deleting_the_actor_keeps_the_chain_valid(users):
    entries = _entries(users, 2)
    admin_id = users["admin"].pk
    users["admin"].delete()
    # Nothing is written to the append-only table: the entry keeps the removed user's id.
    assert AuditLogEntry.objects.get(pk=entries[0].pk).actor_id == admin_id
    assert AuditLogEntry.objects.get(pk=entries[0].pk).actor_name == "admin"
    assert verify_audit_chain() is None


@pytest.mark.django_db
def test_ipv6_addresses_verify_after_a_round_trip(users):
    record_audit(actor=None, source=AuditSource.API, action=AuditAction.UPDATE, ip="2001:DB8:0:0::1")
    assert AuditLogEntry.objects.get().ip == "2001:db8::1"
    assert verify_audit_chain() is None


@pytest.mark.django_db
def test_audit_request_takes_actor_key_name_and_address_from_the_request(users):
    key = create_api_key(user=users["operator"], name="deploy-bot").api_key
    request = RequestFactory().post("/api/x", REMOTE_ADDR="192.0.2.7", HTTP_X_FORWARDED_FOR="1.2.3.4")
    request.user, request.auth = users["operator"], key
    target = MonitoringTarget.objects.create(name="Gateway", slug="gw")
    entry = audit_request(request, source=AuditSource.API, action=AuditAction.CREATE, obj=target, after={"x": 1})
    assert (entry.actor_name, entry.api_key_name, entry.ip) == ("operator", "deploy-bot", "192.0.2.7")
    assert (entry.object_type, entry.object_id, entry.object_repr) == (
        "monitoring.monitoringtarget",
        str(target.pk),
        "Gateway",
    )
    assert client_ip(request) == "192.0.2.7"  # X-Forwarded-For is the client's to forge


@pytest.mark.django_db
def test_snapshot_and_changed_fields():
    parent = MonitoringTarget.objects.create(name="Gateway", slug="gw")
    child = MonitoringTarget.objects.create(name="Sensor", slug="s1", parent=parent, labels={"site": "a"})
    before = snapshot(child, exclude=("updated_at",))
    assert before["parent"] == parent.pk
    assert before["labels"] == {"site": "a"}
    assert "updated_at" not in before
    child.endpoint = "10.0.0.5:80"
    b, a = changed_fields(before, snapshot(child, exclude=("updated_at",)))
    assert (b, a) == ({"endpoint": ""}, {"endpoint": "10.0.0.5:80"})


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_keep_one_chain():
    """Writers in separate transactions queue on the chain lock: no two entries name the
    same predecessor (on PostgreSQL a row lock on the newest entry would fork the chain)."""
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def append_retrying_shared_cache_locks(n: int, i: int) -> None:
        # The SQLite test database is in memory with a shared cache, whose table locks fail
        # at once instead of waiting on the busy timeout as the file database does.
        for _ in range(500):
            try:
                record_audit(actor=None, source=AuditSource.SYSTEM, action=AuditAction.UPDATE, after={"w": n, "i": i})
                return
            except OperationalError as exc:
                if connection.vendor != "sqlite" or "locked" not in str(exc):
                    raise
                time.sleep(0.01)
        raise AssertionError("the chain lock was never free")

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(5):
                append_retrying_shared_cache_locks(n, i)
        except BaseException as exc:  # the assertion below reports it
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert AuditLogEntry.objects.count() == 20
    prev_hashes = list(AuditLogEntry.objects.values_list("prev_hash", flat=True))
    assert len(set(prev_hashes)) == 20
    assert verify_audit_chain() is None
    assert connection.vendor in ("sqlite", "postgresql")
