"""`manage.py status`: the system's overall status, as the original CLI's `status` and
`GET /api/status`. Exits 1 unless healthy, so `manage.py status && manage.py health` can
gate a deployment."""

from rich.console import Group
from rich.table import Table
from rich.text import Text

from alerts.choices import Severity
from dashboard.queries import check_counts, firing_by_severity
from healthchecks.choices import HealthStatus
from monitoring.cli import MonitoringCommand, failure
from monitoring.status import system_status
from monitoring.tui import HEALTH_STYLES, SEVERITY_ORDER, SEVERITY_STYLES


class Command(MonitoringCommand):
    help = (
        "Show the system's status: healthy, degraded (an alert firing or a check critical) or critical (a\n"
        "critical alert firing). Exit code 0 when healthy, 1 otherwise, so it can gate a pipeline.\n"
        "  manage.py status\n"
        "  manage.py status --format json\n"
        "  manage.py status && manage.py health && ./deploy.sh"
    )

    def add_arguments(self, parser) -> None:
        self.add_format_argument(parser, ("table", "json"))

    def handle(self, *args, **options) -> None:
        status = system_status().as_dict()
        firing = firing_by_severity()
        checks = check_counts()
        data = {
            **status,
            "critical_alerts": firing[Severity.CRITICAL],
            "unacknowledged_alerts": firing["unacknowledged"],
            "alerts_by_severity": {severity: firing[severity] for severity in SEVERITY_ORDER},
            "checks_by_status": {name: count for name, count in checks.items() if name != "total"},
        }
        if options["format"] == "json":
            self.emit_json(data)
        else:
            self.print_rich(self.table(data))
        health = data["system_health"]
        if health != "healthy":
            reasons = []
            if data["active_alerts"]:
                reasons.append(f"{data['active_alerts']} alert(s) firing ({data['critical_alerts']} critical)")
            if data["checks_by_status"].get(HealthStatus.CRITICAL):
                reasons.append(f"{data['checks_by_status'][HealthStatus.CRITICAL]} health check(s) critical")
            raise failure(
                f"The system is {health}: {', '.join(reasons)}. "
                "`manage.py alerts list --status firing` and `manage.py health --status critical` show them."
            )

    @staticmethod
    def table(data: dict) -> Group:
        health = data["system_health"]
        headline = Text("System health: ", style="bold")
        headline.append(f" {health.upper()} ", style=HEALTH_STYLES.get(health, "bold"))
        table = Table(show_header=False, box=None, padding=(0, 2))
        table.add_column("What", style="bold")
        table.add_column("Value")
        severities = Text()
        for severity in SEVERITY_ORDER:
            count = data["alerts_by_severity"][severity]
            severities.append(f"{severity} {count}  ", style=SEVERITY_STYLES[severity] if count else "dim")
        table.add_row("Active alerts", f"{data['active_alerts']} ({data['unacknowledged_alerts']} unacknowledged)")
        table.add_row("By severity", severities)
        checks = ", ".join(f"{count} {name}" for name, count in data["checks_by_status"].items())
        table.add_row("Health checks", f"{data['health_checks']} enabled: {checks}")
        table.add_row("Monitoring targets", str(data["monitoring_targets"]))
        table.add_row("Alert rules", f"{data['alert_rules']} enabled")
        return Group(headline, table)
