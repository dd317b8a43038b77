"""The audit log: one function records who changed what, from where, with before/after
JSON. Entries are chained by hash, so a changed or removed row shows."""

import getpass
import hashlib
import ipaddress
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.http import HttpRequest
from django.utils import timezone

from .choices import AuditAction, AuditSource
from .models import ApiKey, AuditLogEntry

MASK = "********"
# Names (of fields, config keys, headers) whose values are secrets. A name is secret when
# it is one of these or ends with one of the suffixes; "key" alone is a slug, not a secret.
SECRET_NAMES = frozenset(
    {"password", "passphrase", "secret", "secrets", "token", "authorization", "auth", "cookie", "webhook_url"}
)
SECRET_SUFFIXES = ("_password", "_secret", "_secrets", "_token", "_key", "_auth", "ping_uuid")
NOT_SECRET_NAMES = frozenset({"key", "idempotency_key", "api_key_name", "prefix"})

# Any constant: on PostgreSQL the appends of the chain queue on this advisory lock.
_CHAIN_LOCK_ID = 0x4D4F4E41  # "MONA"


def is_secret_name(name: Any) -> bool:
    """Decide whether a field or key called `name` holds a secret."""
    normalized = str(name).strip().lower().replace("-", "_")
    if normalized in NOT_SECRET_NAMES:
        return False
    return normalized in SECRET_NAMES or normalized.endswith(SECRET_SUFFIXES)


def mask_secrets(data: Any) -> Any:
    """A copy of `data` with the values of secret-looking keys replaced by a mask."""
    if isinstance(data, dict):
        return {k: (MASK if v not in (None, "") and is_secret_name(k) else mask_secrets(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_secrets(v) for v in data]
    return data


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True)) if value is not None else None


def _normal_ip(ip: str | None) -> str | None:
    # Stored as PostgreSQL's inet prints it back, so the hash of a re-read row matches.
    if not ip:
        return None
    try:
        return ipaddress.ip_address(ip.strip()).compressed
    except ValueError:
        return None


def entry_digest(entry: AuditLogEntry) -> str:
    """The hash of an entry's content chained to the previous entry's hash. The actor's
    foreign key is left out: deleting a user sets it to NULL, and actor_name names them."""
    content = {
        "at": entry.at.astimezone(UTC).isoformat(),
        "actor_name": entry.actor_name,
        "source": entry.source,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "object_repr": entry.object_repr,
        "before": entry.before,
        "after": entry.after,
        "api_key_name": entry.api_key_name,
        "ip": entry.ip,
        "prev_hash": entry.prev_hash,
    }
    blob = json.dumps(content, sort_keys=True, cls=DjangoJSONEncoder).encode()
    return hashlib.sha256(blob).hexdigest()


def _lock_chain() -> None:
    # A row lock on the newest entry does not serialise appends on PostgreSQL: a waiter
    # gets the old newest row back once the lock is released, and the chain forks. An
    # advisory lock held to the end of the transaction does. SQLite's IMMEDIATE
    # transactions already hold the one write lock.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])


def record_audit(
    *,
    actor: User | AnonymousUser | None,
    source: AuditSource | str,
    action: AuditAction | str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    before: dict | None = None,
    after: dict | None = None,
    api_key_name: str = "",
    ip: str | None = None,
    at: datetime | None = None,
) -> AuditLogEntry:
    """Append one entry. Secrets in before/after are masked."""
    user = actor if isinstance(actor, User) else None
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:300]
    with transaction.atomic():
        _lock_chain()
        last = AuditLogEntry.objects.order_by("-id").only("entry_hash").first()
        entry = AuditLogEntry(
            at=at or timezone.now(),
            actor=user,
            actor_name=user.get_username() if user is not None else (str(actor) if actor else "system"),
            source=source,
            action=action,
            object_type=object_type,
            object_id=object_id,
            object_repr=object_repr[:300],
            before=_canonical(mask_secrets(before)),
            after=_canonical(mask_secrets(after)),
            api_key_name=api_key_name,
            ip=_normal_ip(ip),
            prev_hash=last.entry_hash if last else "",
        )
        entry.entry_hash = entry_digest(entry)
        entry.save()
    return entry


def verify_audit_chain(entries: Iterable[AuditLogEntry] | None = None) -> AuditLogEntry | None:
    """The first entry (in the order written) whose hash does not match its content or
    whose link does not name the entry before it; None when the whole chain holds. A
    removed row shows as the next entry's broken link."""
    if entries is None:
        entries = AuditLogEntry.objects.order_by("id").iterator(chunk_size=2000)
    previous_hash = ""
    for entry in entries:
        if entry.prev_hash != previous_hash or entry.entry_hash != entry_digest(entry):
            return entry
        previous_hash = entry.entry_hash
    return None


def client_ip(request: HttpRequest) -> str | None:
    """The address the request came from: REMOTE_ADDR, or behind API_TRUSTED_PROXIES
    proxies the X-Forwarded-For entry the outermost trusted proxy wrote (as DRF's throttles
    count). Entries further left are whatever the client wants them to be."""
    remote = request.META.get("REMOTE_ADDR")
    proxies = (getattr(settings, "REST_FRAMEWORK", {}) or {}).get("NUM_PROXIES") or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies > 0 and forwarded:
        entries = [entry.strip() for entry in forwarded.split(",")]
        return _normal_ip(entries[-min(proxies, len(entries))]) or _normal_ip(remote)
    return _normal_ip(remote)


def cli_actor() -> str:
    """Who runs a management command, as the audit log names them: the OS account."""
    try:
        return f"{getpass.getuser()} (shell)"
    except (OSError, KeyError):  # no login name in a bare container
        return "shell"


def audit_request(
    request: HttpRequest,
    *,
    source: AuditSource | str,
    action: AuditAction | str,
    obj: models.Model | None = None,
    before: dict | None = None,
    after: dict | None = None,
    **target: str,
) -> AuditLogEntry:
    """record_audit for a change made through a request: the actor, their API key's name
    (for the API) and the client address come from the request."""
    key = getattr(request, "auth", None)
    return record_audit(
        actor=getattr(request, "user", None),
        source=source,
        action=action,
        obj=obj,
        before=before,
        after=after,
        api_key_name=key.name if isinstance(key, ApiKey) else "",
        ip=client_ip(request),
        **target,
    )


def snapshot(obj: models.Model, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The audit view of a saved object: its concrete fields (foreign keys as ids) and its
    many-to-many fields (sorted ids), as JSON-ready values."""
    skipped = set(exclude)
    data: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.name not in skipped:
            data[field.name] = field.value_from_object(obj)
    if obj.pk is not None:
        for field in obj._meta.many_to_many:
            if field.name not in skipped:
                data[field.name] = sorted(getattr(obj, field.name).values_list("pk", flat=True))
    return _canonical(data)


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parts of two snapshots that differ, as (before, after)."""
    keys = [k for k in {**before, **after} if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}
