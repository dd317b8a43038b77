"""Tampering with the audit log the way an attacker with database access would: raw SQL,
past the ORM's refusal, and on PostgreSQL with the append-only trigger switched off."""

from collections.abc import Sequence

from django.db import connection, transaction

TABLE = "monitoring_auditlogentry"


def tamper(sql: str, params: Sequence = ()) -> None:
    """Run `sql` (an UPDATE or DELETE of the audit table) as an attacker who may disable triggers."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER monitoring_audit_log_append_only")
        cursor.execute(sql, list(params))
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER monitoring_audit_log_append_only")


def change_entry(pk: int, **values) -> None:
    """UPDATE one entry's columns (JSON values given as text)."""
    assignments = ", ".join(f"{column} = %s" for column in values)
    tamper(f"UPDATE {TABLE} SET {assignments} WHERE id = %s", [*values.values(), pk])  # noqa: S608 - test columns


def remove_entry(pk: int) -> None:
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [pk])  # noqa: S608 - a constant table name
