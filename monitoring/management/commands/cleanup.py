"""`manage.py cleanup [--days N] [--dry-run]`: remove what is older than the retention, as the
periodic cleanup does, and print how much of each kind went (monitoring.retention)."""

import sys
from datetime import datetime

from django.utils import timezone
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from monitoring.audit import cli_actor, record_audit
from monitoring.choices import AuditAction, AuditSource, Role
from monitoring.cli import MonitoringCommand, positive_int
from monitoring.retention import CleanupReport, run_cleanup


class Command(MonitoringCommand):
    help = (
        "Remove data older than the retention (default: the global retention_days): metric samples, health\n"
        "check results (each check keeps its last one), notifications no longer pending or being sent, and\n"
        "resolved alerts with their events once their notifications are gone. Never the audit log. Works in\n"
        "small committed batches, so ingestion is never held up for long; a progress bar on a terminal.\n"
        "  manage.py cleanup\n"
        "  manage.py cleanup --days 14 --dry-run\n"
        "  manage.py cleanup --days 30 --format json --user alice"
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--days",
            type=positive_int,
            metavar="N",
            help="Keep the last N days instead of the global retention_days. E.g. --days 14",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Only count what would be removed; remove nothing. E.g. --dry-run"
        )
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help="Audit the removal as this user, who needs the admin role. Default: the shell account, as for"
            " the other maintenance commands. E.g. --user alice",
        )
        self.add_format_argument(parser, ("table", "json"))

    def handle(self, *args, **options) -> None:
        user = self.acting_user(options["user"], Role.ADMIN, "remove old data") if options["user"] else None
        now = timezone.now()
        if not options["dry_run"] and options["format"] == "table" and self.is_terminal():
            report = self.run_with_progress(options["days"], now)
        else:
            report = run_cleanup(days=options["days"], now=now, dry_run=options["dry_run"])
        if not report.dry_run:
            record_audit(
                actor=user or cli_actor(),
                source=AuditSource.CLI,
                action=AuditAction.DELETE,
                object_type="retention",
                object_repr=report.line()[:300],
                after={"cutoff": report.cutoff.isoformat(), **report.counts},
                at=now,
            )
        if options["format"] == "json":
            self.emit_json(
                {
                    "cutoff": report.cutoff,
                    "dry_run": report.dry_run,
                    "counts": {what.replace(" ", "_"): count for what, count in report.counts.items()},
                }
            )
            return
        verb = "Would remove" if report.dry_run else "Removed"
        self.stdout.write(f"Cutoff: {report.cutoff:%Y-%m-%d %H:%M:%S} UTC")
        for what, count in report.counts.items():
            self.stdout.write(f"{verb} {count} {what}.")

    def run_with_progress(self, days: int | None, now: datetime) -> CleanupReport:
        """The cleanup with a bar per kind: counted first, so each bar knows its end."""
        totals = run_cleanup(days=days, now=now, dry_run=True).counts
        console = Console(file=getattr(self.stdout, "_out", sys.stdout))
        columns = (TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            tasks = {what: progress.add_task(what, total=total) for what, total in totals.items()}
            done = dict.fromkeys(totals, 0)

            def advance(what: str, rows: int) -> None:
                done[what] += rows
                # Rows that aged out since the count make the bar longer, not overfull.
                progress.update(tasks[what], completed=done[what], total=max(totals[what], done[what]))

            return run_cleanup(days=days, now=now, progress=advance)
