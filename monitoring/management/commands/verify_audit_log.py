"""`manage.py verify_audit_log`: recompute the audit log's hash chain and report the first
entry that was changed (or follows a removed one); exit 1 then, 0 when the chain holds."""

from monitoring.audit import verify_audit_chain
from monitoring.cli import MonitoringCommand, failure
from monitoring.models import AuditLogEntry


class Command(MonitoringCommand):
    help = "Verify the audit log's hash chain; exit 1 and name the first tampered entry if it is broken."

    def handle(self, *args, **options) -> None:
        total = AuditLogEntry.objects.count()
        broken = verify_audit_chain()
        if broken is None:
            self.stdout.write(f"The audit log's hash chain holds: {total} entries verified.")
            return
        previous = AuditLogEntry.objects.filter(id__lt=broken.id).order_by("-id").only("id", "entry_hash").first()
        if previous is not None and broken.prev_hash != previous.entry_hash:
            why = f"its link does not name entry {previous.id} (an entry before it was changed or removed)"
        elif previous is None and broken.prev_hash:
            why = "it is the first entry but links to an earlier one (entries before it were removed)"
        else:
            why = "its content does not match its hash (the entry was changed)"
        raise failure(
            f"The audit log was tampered with: entry {broken.id} "
            f"({broken.at:%Y-%m-%d %H:%M:%S} {broken.actor_name} {broken.action} {broken.object_type} "
            f"{broken.object_id}) is the first that fails: {why}."
        )
