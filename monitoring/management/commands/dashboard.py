"""`manage.py dashboard`: the original CLI's live terminal dashboard (monitoring.tui), or
one frame of it with --once."""

import math
import sys

from django.utils import timezone
from rich.console import Console

from monitoring.cli import MonitoringCommand, usage_error
from monitoring.tui import KeyReader, render_dashboard, run_live, take_snapshot

MIN_INTERVAL = 1.0


def interval_seconds(text: str) -> float:
    """argparse type: seconds between refreshes, at least MIN_INTERVAL."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(text) from None
    if not math.isfinite(value) or value < MIN_INTERVAL:
        raise ValueError(text)
    return value


interval_seconds.__name__ = f"interval (seconds, at least {MIN_INTERVAL:g})"


class Command(MonitoringCommand):
    help = (
        "A live full-screen view of system health, firing alerts by severity, unhealthy checks and recent\n"
        "events, refreshed from the database. q (or Ctrl-C) leaves; any other key refreshes at once.\n"
        "  manage.py dashboard\n"
        "  manage.py dashboard --interval 10\n"
        "  manage.py dashboard --once                 (one frame, also without a terminal)\n"
        "  manage.py dashboard --once --format json"
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--interval",
            type=interval_seconds,
            default=5.0,
            metavar="SECONDS",
            help="Seconds between refreshes (default 5, at least 1). E.g. --interval 10",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="Print one frame and exit; works without a terminal (pipes, cron, CI). E.g. --once",
        )
        self.add_format_argument(parser, ("table", "json"))

    def handle(self, *args, **options) -> None:
        if options["once"]:
            snapshot = take_snapshot(now=timezone.now())
            if options["format"] == "json":
                self.emit_json(snapshot.as_dict())
            else:
                self.print_rich(render_dashboard(snapshot, full_screen=False))
            return
        if options["format"] != "table":
            raise usage_error(
                "--format json needs --once: the live view is for people; e.g. dashboard --once --format json"
            )
        if not self.is_terminal():
            raise usage_error(
                "The live dashboard needs a terminal and stdout is not one; pass --once to print one frame."
            )
        console = Console(file=getattr(self.stdout, "_out", sys.stdout), highlight=False)
        try:
            with KeyReader(sys.stdin) as keys:
                run_live(console=console, keys=keys, interval=options["interval"])
        except KeyboardInterrupt:
            pass  # Ctrl-C is how people leave; the screen and terminal mode are already restored
