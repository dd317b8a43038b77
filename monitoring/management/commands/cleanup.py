"""`manage.py cleanup [--days N] [--dry-run]`: remove what is older than the retention, as the
periodic cleanup does, and print how much of each kind went (monitoring.retention)."""

from django.utils import timezone

from monitoring.audit import cli_actor, record_audit
from monitoring.choices import AuditAction, AuditSource
from monitoring.cli import MonitoringCommand, positive_int
from monitoring.retention import run_cleanup


class Command(MonitoringCommand):
    help = "Remove data older than the retention (default: the global retention_days)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--days", type=positive_int, help="Keep this many days instead of the global retention_days."
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be removed.")

    def handle(self, *args, **options) -> None:
        now = timezone.now()
        report = run_cleanup(days=options["days"], now=now, dry_run=options["dry_run"])
        if not report.dry_run:
            record_audit(
                actor=cli_actor(),
                source=AuditSource.CLI,
                action=AuditAction.DELETE,
                object_type="retention",
                object_repr=report.line()[:300],
                after={"cutoff": report.cutoff.isoformat(), **report.counts},
                at=now,
            )
        verb = "Would remove" if report.dry_run else "Removed"
        self.stdout.write(f"Cutoff: {report.cutoff:%Y-%m-%d %H:%M:%S} UTC")
        for what, count in report.counts.items():
            self.stdout.write(f"{verb} {count} {what}.")
