"""`manage.py health`: the health checks with their status, last run and response time, as
the original CLI's `health` command. Exits 1 while an enabled check is critical, so
`manage.py status && manage.py health` can gate a deployment."""

from django.utils import timezone

from healthchecks.api import HealthCheckSerializer
from healthchecks.choices import CheckKind, HealthStatus
from healthchecks.models import HealthCheck
from healthchecks.services import run_checks_now
from monitoring.audit import record_audit
from monitoring.choices import AuditAction, AuditSource, Role
from monitoring.cli import Column, MonitoringCommand, failure, usage_error

STATUS_STYLES = {
    HealthStatus.HEALTHY: "green",
    HealthStatus.WARNING: "yellow",
    HealthStatus.CRITICAL: "bold red",
    HealthStatus.UNKNOWN: "dim",
}

COLUMNS = [
    Column("id", "ID", justify="right"),
    Column("name", "Check"),
    Column("kind", "Type"),
    Column("target", "Target"),
    Column("status", "Status", style=STATUS_STYLES.get),
    Column("last_checked_at", "Last run"),
    Column("response_time_ms", "Response (ms)", justify="right"),
    Column("message", "Message"),
]


class Command(MonitoringCommand):
    help = (
        "Show the health checks with their status, last run and response time.\n"
        "  manage.py health\n"
        "  manage.py health --status critical --format json\n"
        "  manage.py health --run --check database_health --user alice"
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--status", choices=HealthStatus.values, help="Only checks in this state. E.g. --status critical"
        )
        parser.add_argument("--kind", choices=CheckKind.values, help="Only checks of this type. E.g. --kind http")
        parser.add_argument("--target", help="Only the checks of this target (its slug). E.g. --target database")
        parser.add_argument(
            "--check",
            action="append",
            metavar="ID_OR_KEY",
            help="Only this check (repeatable). E.g. --check database_health",
        )
        parser.add_argument(
            "--run", action="store_true", help="Run the (selected) checks now before showing them (operator)."
        )
        self.add_user_argument(parser)
        self.add_format_argument(parser)

    def handle(self, *args, **options) -> None:
        checks = HealthCheck.objects.for_listing().order_by("name", "pk")
        if options["check"]:
            ids = [int(c) for c in options["check"] if c.isdigit()]
            keys = [c for c in options["check"] if not c.isdigit()]
            checks = checks.filter(pk__in=ids) | checks.filter(key__in=keys)
            found = {str(pk) for pk in checks.values_list("pk", flat=True)} | set(checks.values_list("key", flat=True))
            missing = [c for c in options["check"] if c not in found]
            if missing:
                raise usage_error(f"No check {', '.join(map(repr, missing))}; `manage.py health` lists them.")
        if options["kind"]:
            checks = checks.filter(kind=options["kind"])
        if options["target"]:
            checks = checks.filter(target__slug=options["target"])
        if options["run"]:
            self.run(list(checks.values_list("pk", flat=True)), options["user"])
        if options["status"]:
            checks = checks.filter(status=options["status"])
        rows = [self.row(item) for item in HealthCheckSerializer(checks.all(), many=True).data]
        self.emit(rows, COLUMNS, options["format"], title="Health checks", empty="No health checks.")
        critical = [row["name"] for row in rows if row["enabled"] and row["status"] == HealthStatus.CRITICAL]
        if critical:
            raise failure(f"{len(critical)} check(s) critical: {', '.join(critical)}")

    @staticmethod
    def row(item: dict) -> dict:
        last = item["last_result"] or {}
        response = last.get("response_time")
        return {
            **item,
            "response_time_ms": round(response * 1000, 1) if response is not None else None,
            "message": last.get("message", ""),
        }

    def run(self, check_ids: list[int], username: str | None) -> None:
        user = self.acting_user(username, Role.OPERATOR, "run health checks")
        if not check_ids:
            raise failure("No checks to run.")
        record_audit(
            actor=user,
            source=AuditSource.CLI,
            action=AuditAction.RUN,
            object_type="healthchecks.healthcheck",
            object_repr=f"run {len(check_ids)} check(s)",
            after={"check_ids": check_ids},
        )
        # A terminal can wait for every check: no request timeout to respect.
        report = run_checks_now(check_ids=check_ids, now=timezone.now(), wait_seconds=float("inf"))
        for check_id, reason in sorted(report.skipped.items()):
            self.stderr.write(f"check {check_id} not run: {reason}")
        for batch in report.queued:
            self.stderr.write(f"checks {', '.join(map(str, batch.check_ids))} queued as task {batch.task_id}")
