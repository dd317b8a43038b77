"""`manage.py rotate_encryption_key [--dry-run]`: re-encrypt every secret at rest that is not
under the current MONITORING_ENCRYPTION_KEY, one row at a time, while everything keeps
running (values under MONITORING_ENCRYPTION_OLD_KEYS still decrypt until the last is done)."""

from collections import Counter

from django.apps import apps
from django.db import transaction

from monitoring.audit import cli_actor, record_audit
from monitoring.choices import AuditAction, AuditSource
from monitoring.cli import MonitoringCommand, failure
from monitoring.crypto import (
    DecryptionError,
    configured_key_ids,
    keyring_from_settings,
    needs_reencryption,
    reencrypt,
    row_context,
    token_key_id,
)

# Every encrypted column: (model label, field name). The row's identity is its associated data.
ENCRYPTED_FIELDS = (("notifications.NotificationChannel", "secrets"),)


class Command(MonitoringCommand):
    help = (
        "Re-encrypt every secret under the current MONITORING_ENCRYPTION_KEY. Set the new key there and the old one "
        "in MONITORING_ENCRYPTION_OLD_KEYS first (every process), run this, then drop the old key."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Only count the values under each key.")

    def handle(self, *args, **options) -> None:
        keyring = keyring_from_settings()
        before: Counter[str] = Counter()
        done, failed = 0, []
        for label, field_name in ENCRYPTED_FIELDS:
            model = apps.get_model(label)
            stored = model.objects.exclude(**{field_name: ""}).values_list("pk", field_name)
            for pk, token in stored.iterator(chunk_size=500):
                try:
                    before[token_key_id(token)] += 1
                    if options["dry_run"] or not needs_reencryption(token, keyring):
                        continue
                    if self._rotate_row(model, field_name, pk, keyring):
                        done += 1
                except DecryptionError as exc:
                    failed.append(f"{label} {pk}: {exc}")
        counts = ", ".join(f"{kid}: {count}" for kid, count in sorted(before.items())) or "none stored"
        self.stdout.write(f"Values per key id before: {counts}. Current key id: {keyring.current.kid}.")
        if options["dry_run"]:
            pending = sum(count for kid, count in before.items() if kid != keyring.current.kid)
            self.stdout.write(f"Dry run: {pending} value(s) would be re-encrypted.")
            return
        record_audit(
            actor=cli_actor(),
            source=AuditSource.CLI,
            action=AuditAction.ROTATE,
            object_type="monitoring.encryptionkey",
            object_id=keyring.current.kid,
            object_repr=f"encryption key {keyring.current.kid}",
            after={"reencrypted": done, "failed": len(failed), "configured_key_ids": list(configured_key_ids(keyring))},
        )
        self.stdout.write(f"Re-encrypted {done} value(s) under key {keyring.current.kid}.")
        if failed:
            raise failure(
                f"{len(failed)} value(s) could not be decrypted with the configured keys and were left as they are:\n"
                + "\n".join(failed)
            )
        self.stdout.write("Every value is under the current key: the old keys can be removed from every process.")

    @staticmethod
    def _rotate_row(model, field_name: str, pk, keyring) -> bool:
        """Re-encrypt one row's value; False when it was re-encrypted or rewritten meanwhile."""
        with transaction.atomic():
            obj = model.objects.select_for_update().filter(pk=pk).first()
            token = getattr(obj, field_name, "") if obj is not None else ""
            if not token or not needs_reencryption(token, keyring):
                return False
            fresh = reencrypt(token, context=row_context(obj, field_name), keyring=keyring)
            # Only this column is written, so a concurrent edit of the row's other fields is kept.
            return bool(model.objects.filter(pk=pk, **{field_name: token}).update(**{field_name: fresh}))
