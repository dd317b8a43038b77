"""The audit log: one function records who changed what, from where, with before/after
JSON. Entries are chained by hash, so a changed or removed row shows."""

import hashlib
import json
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from .choices import AuditAction, AuditSource
from .models import AuditLogEntry

MASK = "********"
SECRET_WORDS = ("password", "secret", "token", "key", "authorization", "webhook_url", "auth")


def mask_secrets(data: Any) -> Any:
    """A copy of `data` with the values of secret-looking keys replaced by a mask."""
    if isinstance(data, dict):
        return {
            k: (MASK if v not in (None, "") and any(w in str(k).lower() for w in SECRET_WORDS) else mask_secrets(v))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [mask_secrets(v) for v in data]
    return data


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True)) if value is not None else None


def entry_digest(entry: AuditLogEntry) -> str:
    """The hash of an entry's content chained to the previous entry's hash."""
    content = {
        "at": entry.at.isoformat(),
        "actor_id": entry.actor_id,
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
        # Serialise appends so the chain has one order (the row lock on the newest entry).
        last = AuditLogEntry.objects.select_for_update().order_by("-id").only("entry_hash").first()
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
            ip=ip,
            prev_hash=last.entry_hash if last else "",
        )
        entry.entry_hash = entry_digest(entry)
        entry.save()
    return entry
