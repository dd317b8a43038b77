"""`manage.py notify`: send a test message through notification channels, as
`POST /api/notifications/test` does."""

from django.utils import timezone

from monitoring.choices import AuditSource, Role
from monitoring.cli import Column, MonitoringCommand, failure, usage_error
from notifications.choices import NotificationStatus
from notifications.services import UnknownChannelError, channels_named, send_test_notifications

COLUMNS = [
    Column("channel", "Channel"),
    Column("kind", "Kind"),
    Column("enabled", "Enabled"),
    Column("status", "Result", style=lambda s: "green" if s == NotificationStatus.SENT else "bold red"),
    Column("duration_ms", "ms", justify="right"),
    Column("error", "Error"),
]


class Command(MonitoringCommand):
    help = (
        "Send a test notification through channels (operator) and show each outcome; exit 1 if any failed.\n"
        "  manage.py notify --channels email slack\n"
        "  manage.py notify                      (every enabled channel)\n"
        "  manage.py notify --channels webhook --format json --user alice"
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--channels",
            nargs="+",
            default=[],
            metavar="CHANNEL",
            help="Channel keys or kinds. Default: every enabled channel. E.g. --channels email slack",
        )
        self.add_user_argument(parser)
        self.add_format_argument(parser, ("table", "json"))

    def handle(self, *args, **options) -> None:
        user = self.acting_user(options["user"], Role.OPERATOR, "send test notifications")
        try:
            channels = channels_named(options["channels"])
        except UnknownChannelError as exc:
            raise usage_error(str(exc)) from None
        if not channels:
            raise failure("There is no enabled channel to test; configure one in the admin or with import_config.")
        outcomes = send_test_notifications(channels=channels, user=user, source=AuditSource.CLI, now=timezone.now())
        rows = [o.as_dict() for o in outcomes]
        if options["format"] == "json":
            self.emit_json(rows)
        else:
            self.emit(rows, COLUMNS, "table", title="Test notifications")
        failed = [o.channel for o in outcomes if o.status != NotificationStatus.SENT]
        if failed:
            raise failure(f"The test message failed on {', '.join(failed)}.")
