"""`manage.py targets`: the monitoring targets with their health, as the original CLI's
`targets` command."""

from django.utils import timezone

from healthchecks.choices import HealthStatus
from healthchecks.history import annotated_target_status, targets_with_health, uptime_by_target
from monitoring.cli import Column, MonitoringCommand

from .health import STATUS_STYLES

COLUMNS = [
    Column("id", "ID", justify="right"),
    Column("slug", "Key"),
    Column("name", "Name"),
    Column("kind", "Type"),
    Column("endpoint", "Endpoint"),
    Column("enabled", "Enabled"),
    Column("status", "Health", style=STATUS_STYLES.get),
    Column("checks", "Checks", justify="right"),
    Column("critical", "Critical", justify="right"),
    Column("uptime_percentage", "Uptime 24 h %", justify="right"),
]


class Command(MonitoringCommand):
    help = "Show the monitoring targets with their health.\n  manage.py targets\n  manage.py targets --format json"

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--status", choices=HealthStatus.values, help="Only targets in this state. E.g. --status critical"
        )
        self.add_format_argument(parser)

    def handle(self, *args, **options) -> None:
        uptime = uptime_by_target(now=timezone.now(), hours=24)
        rows = []
        for target in targets_with_health().order_by("name", "pk"):
            status = annotated_target_status(target)
            if options["status"] and status != options["status"]:
                continue
            rows.append(
                {
                    "id": target.pk,
                    "slug": target.slug,
                    "name": target.name,
                    "kind": target.kind,
                    "endpoint": target.endpoint,
                    "enabled": target.enabled,
                    "parent": target.parent.slug if target.parent_id else None,
                    "status": status,
                    "checks": target.checks_total,
                    "critical": target.checks_critical,
                    "uptime_percentage": uptime.get(target.pk),
                }
            )
        self.emit(rows, COLUMNS, options["format"], title="Monitoring targets", empty="No monitoring targets.")
