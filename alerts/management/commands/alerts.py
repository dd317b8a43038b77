"""`manage.py alerts list|ack|resolve`: the original CLI's alert commands."""

from datetime import timedelta

from django.utils import timezone

from alerts.api.alerts import AlertFilterSerializer, AlertSerializer, alerts_for_listing, filter_alerts
from alerts.choices import AlertState, Severity
from alerts.lifecycle import STATUS_FILTERS, AlertStateError, acknowledge_alert, resolve_alert
from alerts.models import Alert
from monitoring.choices import AuditSource, Role
from monitoring.cli import Column, MonitoringCommand, failure, positive_int, usage_error

SEVERITY_STYLES = {Severity.CRITICAL: "bold red", Severity.HIGH: "red", Severity.MEDIUM: "yellow", Severity.LOW: "cyan"}
STATUS_STYLES = {AlertState.ACTIVE: "bold red", AlertState.ACKNOWLEDGED: "yellow", AlertState.PENDING: "magenta"}

COLUMNS = [
    Column("id", "ID", justify="right"),
    Column("status", "Status", style=STATUS_STYLES.get),
    Column("severity", "Severity", style=SEVERITY_STYLES.get),
    Column("rule_name", "Rule"),
    Column("labels", "Labels"),
    Column("current_value", "Value", justify="right"),
    Column("triggered_at", "Fired"),
    Column("acknowledged_by", "Ack by"),
    Column("silenced", "Silenced"),
]


class Command(MonitoringCommand):
    help = (
        "List, acknowledge and resolve alerts.\n"
        "  manage.py alerts list --status active --severity critical\n"
        "  manage.py alerts ack --alert-id 42 --note 'on it' --user alice\n"
        "  manage.py alerts resolve --alert-id 42"
    )

    def add_arguments(self, parser) -> None:
        actions = self.add_actions(parser, "{list,ack,resolve}")

        listing = actions.add_parser(
            "list",
            help="List alerts, newest first.",
            description="List alerts, newest first.\n\n"
            "  manage.py alerts list --status active --severity critical --format json",
        )
        listing.add_argument(
            "--status",
            help=f"Comma-separated: {', '.join(STATUS_FILTERS)}, or all. Default: open (pending, active, "
            "acknowledged). E.g. --status active",
        )
        listing.add_argument(
            "--severity", help="Comma-separated: low, medium, high, critical. E.g. --severity critical"
        )
        listing.add_argument("--rule", help="A rule's id or key. E.g. --rule high_cpu_usage")
        listing.add_argument(
            "--limit", type=positive_int, default=100, help="Show at most this many (default 100). E.g. --limit 20"
        )
        self.add_format_argument(listing)

        ack = actions.add_parser(
            "ack",
            help="Acknowledge a firing alert (operator): escalation stops.",
            description="Acknowledge a firing alert (operator role): escalation stops; it resolves when its condition"
            " clears.\n\n  manage.py alerts ack --alert-id 42 --note 'rebooting gw-3' --expires-in 60 --user alice",
        )
        ack.add_argument("--alert-id", type=positive_int, required=True, help="The alert's id. E.g. --alert-id 42")
        ack.add_argument("--note", default="", help="Why, or what you are doing. E.g. --note 'rebooting gw-3'")
        ack.add_argument(
            "--expires-in",
            type=positive_int,
            metavar="MINUTES",
            help="The alert fires again after this many minutes unless resolved. E.g. --expires-in 60",
        )
        self.add_user_argument(ack)
        self.add_format_argument(ack, ("table", "json"))

        resolve = actions.add_parser(
            "resolve",
            help="Resolve a firing alert by hand (operator).",
            description="Resolve a firing alert by hand (operator role). If its condition still holds, the next"
            " evaluation starts a new alert.\n\n  manage.py alerts resolve --alert-id 42 --note 'replaced the PSU'",
        )
        resolve.add_argument("--alert-id", type=positive_int, required=True, help="The alert's id. E.g. --alert-id 42")
        resolve.add_argument("--note", default="", help="What fixed it. E.g. --note 'replaced the PSU'")
        self.add_user_argument(resolve)
        self.add_format_argument(resolve, ("table", "json"))

    def handle(self, *args, **options) -> None:
        if options["action"] == "list":
            self.list_alerts(options)
        else:
            self.act(options)

    def list_alerts(self, options: dict) -> None:
        status = options["status"] or "open"
        query = {k: v for k, v in {"severity": options["severity"], "rule": options["rule"]}.items() if v}
        if status != "all":
            query["status"] = status
        params = AlertFilterSerializer(data=query)
        if not params.is_valid():
            field, errors = next(iter(params.errors.items()))
            raise usage_error(f"--{field}: {' '.join(str(e) for e in errors)}")
        alerts = filter_alerts(alerts_for_listing(), params.validated_data)
        rows = AlertSerializer(alerts[: options["limit"]], many=True).data
        self.emit(rows, COLUMNS, options["format"], title=f"Alerts ({status})", empty=f"No {status} alerts.")

    def act(self, options: dict) -> None:
        acknowledging = options["action"] == "ack"
        verb = "acknowledged" if acknowledging else "resolved"
        user = self.acting_user(
            options["user"], Role.OPERATOR, "acknowledge alerts" if acknowledging else "resolve alerts"
        )
        alert_id, now = options["alert_id"], timezone.now()
        try:
            if acknowledging:
                expires = options["expires_in"]
                acknowledge_alert(
                    alert_id=alert_id,
                    user=user,
                    note=options["note"],
                    expires_at=now + timedelta(minutes=expires) if expires else None,
                    source=AuditSource.CLI,
                    now=now,
                )
            else:
                resolve_alert(alert_id=alert_id, user=user, note=options["note"], source=AuditSource.CLI, now=now)
        except Alert.DoesNotExist:
            raise failure(
                f"There is no alert {alert_id}; `manage.py alerts list --status all` shows the ids."
            ) from None
        except AlertStateError as exc:
            raise failure(f"{exc}. `manage.py alerts list` shows the alerts and their status.") from None
        alert = alerts_for_listing().get(pk=alert_id)
        if options["format"] == "json":
            self.emit_json(AlertSerializer(alert).data)
        else:
            self.stdout.write(f"Alert {alert_id} ({alert}) {verb} by {user.username}.")
