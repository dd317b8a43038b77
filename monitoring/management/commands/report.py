"""`manage.py report alerts|performance --days N [--output FILE]`: the original CLI's
reports, printed as tables (or JSON/CSV) and written as a standalone HTML page with charts
or as the data (monitoring.reports)."""

import textwrap
from pathlib import Path

from django.core.management.base import OutputWrapper
from django.utils import timezone
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from monitoring.cli import Column, MonitoringCommand, failure, usage_error
from monitoring.reports import (
    MAX_REPORT_DAYS,
    Report,
    Section,
    build_report,
    display_value,
    report_csv,
    report_html,
    report_json,
)
from monitoring.tui import SEVERITY_STYLES

WRITERS = {".html": report_html, ".htm": report_html, ".json": report_json, ".csv": report_csv}
TEXT_KEYS = {"rule", "name", "severity", "channel_key", "kind", "target", "metric", "labels", "day"}
# Shown in JSON, CSV and as the HTML chart; as a table it would only repeat the chart.
CHART_ONLY_SECTIONS = {"fired_per_day"}


def report_days(text: str) -> int:
    """argparse type: a whole number of days from 1 to MAX_REPORT_DAYS."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(text) from None
    if not 1 <= value <= MAX_REPORT_DAYS:
        raise ValueError(text)
    return value


report_days.__name__ = f"number of days (a whole number from 1 to {MAX_REPORT_DAYS})"


class Command(MonitoringCommand):
    help = (
        "Report on alerting or performance over the last days: tables, and with --output an HTML page with\n"
        "charts or the data as JSON/CSV.\n"
        "  manage.py report alerts --days 7\n"
        "  manage.py report alerts --days 7 --output alerts.html\n"
        "  manage.py report performance --days 30 --output performance.csv\n"
        "  manage.py report performance --days 30 --format json"
    )

    def add_arguments(self, parser) -> None:
        actions = self.add_actions(parser, "{alerts,performance}")
        kinds = {
            "alerts": (
                7,
                "Alerts fired per rule and severity, mean time to acknowledge and to resolve, the noisiest "
                "rules with their flap counts, notifications sent and failed per channel.",
                "manage.py report alerts --days 7 --output alerts.html",
            ),
            "performance": (
                30,
                "Per target: uptime %, response time p50/p95/p99 and incidents; system metrics min/avg/max.",
                "manage.py report performance --days 30 --output performance.html",
            ),
        }
        for kind, (default_days, what, example) in kinds.items():
            sub = actions.add_parser(
                kind, help=what.replace("%", "%%"), description=f"{textwrap.fill(what, 100)}\n\n  {example}"
            )
            sub.add_argument(
                "--days",
                type=report_days,
                default=default_days,
                metavar="N",
                help=f"The period: the last N days up to now (default {default_days}, at most {MAX_REPORT_DAYS})."
                f" E.g. --days {default_days}",
            )
            sub.add_argument(
                "--output",
                metavar="FILE",
                help="Also write the report to FILE, by its extension: .html a standalone page with charts,"
                f" .json or .csv the data. E.g. --output {kind}.html",
            )
            self.add_format_argument(sub)

    def handle(self, *args, **options) -> None:
        output = Path(options["output"]) if options["output"] else None
        if output is not None and output.suffix.lower() not in WRITERS:
            raise usage_error(
                f"--output: cannot tell the format of {str(output)!r} from its extension; "
                "name a .html, .json or .csv file."
            )
        report = build_report(options["action"], now=timezone.now(), days=options["days"])
        fmt = options["format"]
        if fmt == "json":
            self.stdout.write(report_json(report))
        elif fmt == "csv":
            self.stdout.write(report_csv(report), ending="")
        else:
            self.print_rich(self.tables(report))
        if output is not None:
            self.write_file(report, output, tell=self.stdout if fmt == "table" else self.stderr)

    def write_file(self, report: Report, output: Path, *, tell: OutputWrapper) -> None:
        content = WRITERS[output.suffix.lower()](report)
        try:
            output.write_text(content, encoding="utf-8")
        except OSError as exc:
            raise failure(
                f"Cannot write {str(output)!r}: {exc.strerror or exc}; check that its directory exists and is"
                " writable, or pass another --output."
            ) from None
        tell.write(f"Wrote {report.kind} report to {output}")

    def tables(self, report: Report) -> Group:
        since = timezone.localtime(report.since).strftime("%Y-%m-%d %H:%M")
        until = timezone.localtime(report.until).strftime("%Y-%m-%d %H:%M %Z")
        headline = Text(f"{report.title} ({since} to {until})", style="bold")
        summary = Table(show_header=False)
        summary.add_column("What")
        summary.add_column("Value", justify="right")
        for key, label, value in report.summary:
            summary.add_row(label, display_value(key, value))
        return Group(
            headline, summary, *(self.section_table(s) for s in report.sections if s.key not in CHART_ONLY_SECTIONS)
        )

    @staticmethod
    def section_table(section: Section) -> Table | Text:
        columns = [
            Column(key, header, justify="left" if key in TEXT_KEYS else "right") for key, header in section.columns
        ]
        if not section.rows:
            return Text(f"{section.title}: {section.empty}")
        table = Table(title=section.title, title_justify="left", header_style="bold")
        for column in columns:
            table.add_column(column.header, justify=column.justify, overflow="fold")
        for row in section.rows:
            cells = []
            for column in columns:
                text = display_value(column.key, row.get(column.key))
                style = SEVERITY_STYLES.get(text) if column.key == "severity" else None
                cells.append(f"[{style}]{escape(text)}[/]" if style else escape(text))
            table.add_row(*cells)
        return table
