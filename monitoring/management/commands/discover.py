"""`manage.py discover [--source S ...] [--network CIDR ...] [--ports P ...] [--approve]`: run
discovery now (the network scan too, whatever its interval), list what awaits approval,
and with --approve approve it as an admin (audited)."""

from django.utils import timezone

from monitoring.choices import AuditSource, DiscoverySource, Role
from monitoring.cli import Column, MonitoringCommand, usage_error
from monitoring.discovery.models import DiscoveredTarget
from monitoring.discovery.run import run_discovery
from monitoring.discovery.services import approve_discovered

COLUMNS = [
    Column("id", "ID", justify="right"),
    Column("source", "Source"),
    Column("state", "State"),
    Column("kind", "Kind"),
    Column("name", "Name"),
    Column("endpoint", "Endpoint"),
    Column("parent_ref", "Gateway"),
    Column("target", "Target"),
]


class Command(MonitoringCommand):
    help = "Run discovery now and list the discovered targets awaiting approval (--approve: approve them)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--source",
            action="append",
            choices=DiscoverySource.values,
            help="Only this source (repeatable). Default: every configured one.",
        )
        parser.add_argument(
            "--network",
            action="append",
            metavar="CIDR",
            help="Scan this network, address or range a-b instead of MONITORING_DISCOVERY_NETWORKS (repeatable).",
        )
        parser.add_argument(
            "--ports",
            action="append",
            metavar="PORTS",
            help="Ports (80, 8000-8100) instead of MONITORING_DISCOVERY_PORTS (repeatable).",
        )
        parser.add_argument("--approve", action="store_true", help="Approve every pending discovered target listed.")
        self.add_user_argument(parser)
        self.add_format_argument(parser)

    def handle(self, *args, **options) -> None:
        sources = options["source"] or DiscoverySource.values
        user = None
        if options["approve"]:
            user = self.acting_user(options["user"], Role.ADMIN, "approve discovered targets")
        if options["ports"] and not options["network"]:
            raise usage_error("--ports needs --network (the configured ranges use MONITORING_DISCOVERY_PORTS).")
        ports = [part for value in options["ports"] or [] for part in value.split(",")] or None
        report = run_discovery(
            now=timezone.now(), sources=sources, force_scan=True, networks=options["network"], ports=ports
        )
        if options["format"] == "table":
            self.stderr.write(f"Discovery: {report.line()}")
        pending = list(DiscoveredTarget.objects.pending().filter(source__in=sources).order_by("id"))
        title = f"{len(pending)} discovered target(s) awaiting approval"
        if user is not None:
            for row in pending:
                approve_discovered(discovered=row, actor=user, source=AuditSource.CLI)
            title = f"Approved {len(pending)} discovered target(s)"
        shown = DiscoveredTarget.objects.filter(pk__in=[row.pk for row in pending]).select_related("target")
        rows = [
            {
                "id": row.pk,
                "source": row.source,
                "state": row.state,
                "kind": row.kind,
                "name": row.name,
                "endpoint": row.endpoint,
                "parent_ref": row.parent_ref,
                "target": row.target.slug if row.target else None,
                "labels": row.labels,
            }
            for row in shown.order_by("id")
        ]
        self.emit(rows, COLUMNS, options["format"], title=title, empty="Nothing awaits approval.")
        if report.errors and options["format"] == "table":
            for error in report.errors:
                self.stderr.write(f"warning: {error}")
