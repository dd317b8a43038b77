"""What every `manage.py` command of the product shares: acting as a named user with a
role check, output as a rich table (colour only on a terminal) or JSON/CSV for scripts,
and exit codes: 0 success, 1 a failed or refused operation, 2 bad usage."""

import argparse
import csv
import io
import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser, DjangoHelpFormatter
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q
from django.utils import timezone
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .choices import Role
from .roles import ROLE_RANK, user_role

EXIT_FAILED = 1
EXIT_USAGE = 2
FORMATS = ("table", "json", "csv")


def usage_error(message: str) -> CommandError:
    """Bad usage (a malformed or impossible argument): exit code 2."""
    return CommandError(message, returncode=EXIT_USAGE)


def failure(message: str) -> CommandError:
    """The operation failed or was refused (unknown object, invalid transition, forbidden
    role): exit code 1."""
    return CommandError(message, returncode=EXIT_FAILED)


class HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's help layout, keeping the line breaks of descriptions (their examples)."""


class UsageParser(CommandParser):
    """Django's parser, but an argument error is exit code 2 also through call_command
    (Django raises a CommandError with code 1 there)."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str):
        if self.called_from_command_line:
            super().error(message)  # argparse prints the usage and exits with 2
        raise usage_error(f"Error: {message}\n{self.format_usage()}")


def positive_int(text: str) -> int:
    """argparse type: an integer above zero."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(text) from None
    if value <= 0:
        raise ValueError(text)
    return value


positive_int.__name__ = "positive integer"  # argparse names the type in its message


@dataclass(frozen=True)
class Column:
    """A column of a table or CSV: the row key, its header, and optionally a rich style
    chosen by the cell's value (e.g. red for critical)."""

    key: str
    header: str
    style: Callable[[Any], str | None] | None = None
    justify: str = "left"


def format_cell(value: Any) -> str:
    """A value as a person reads it in a table or CSV cell."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    if isinstance(value, list | tuple):
        return ",".join(format_cell(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class MonitoringCommand(BaseCommand):
    """Base of the product's commands. Subclasses call `add_user_argument` and
    `add_format_argument` in add_arguments, `acting_user()` before a change, and `emit()`
    for output."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        kwargs.setdefault("formatter_class", HelpFormatter)
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # BaseCommand builds a CommandParser itself; switching the class (a subclass that
        # only overrides error()) gives the main parser and its subparsers exit code 2.
        parser.__class__ = UsageParser
        return parser

    # --- Arguments ---------------------------------------------------------------------

    @staticmethod
    def add_actions(parser: CommandParser, metavar: str) -> argparse._SubParsersAction:
        """Sub-commands (`alerts list`, `alerts ack`), whose argument errors exit with 2 too."""
        return parser.add_subparsers(dest="action", required=True, metavar=metavar, parser_class=UsageParser)

    @staticmethod
    def add_user_argument(parser: CommandParser) -> None:
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help="Act as this user (audited as them; their role must allow the action). Default: the first admin.",
        )

    @staticmethod
    def add_format_argument(parser: CommandParser, formats: Sequence[str] = FORMATS) -> None:
        parser.add_argument(
            "--format",
            choices=formats,
            default="table",
            help="table for people (default), json for scripts"
            + (", csv for spreadsheets" if "csv" in formats else ""),
        )

    # --- Acting as a user -----------------------------------------------------------------

    def acting_user(self, username: str | None, needed: Role, doing: str) -> User:
        """The user the command acts as: `--user`, else the first admin; refused (exit 1)
        when their role does not allow `doing` (e.g. "acknowledge alerts")."""
        if username:
            user = User.objects.filter(username=username).first()
            if user is None:
                raise usage_error(f"There is no user {username!r}; pass an existing username to --user.")
        else:
            user = (
                User.objects.filter(is_active=True)
                .filter(Q(is_superuser=True) | Q(groups__name=Role.ADMIN.value))
                .order_by("id")
                .first()
            )
            if user is None:
                raise failure(
                    "There is no admin user to act as; create one with `manage.py createsuperuser` or pass --user."
                )
        if not user.is_active:
            raise failure(f"User {user.username!r} is inactive; pass an active user to --user.")
        role = user_role(user)
        if role is None or ROLE_RANK[role] < ROLE_RANK[needed]:
            have = f"the {role.value} role" if role else "no role"
            raise failure(
                f"User {user.username!r} has {have}; to {doing} needs the {needed.value} role or higher. "
                "Pass --user with such an account."
            )
        return user

    # --- Output ---------------------------------------------------------------------------------

    def is_terminal(self) -> bool:
        isatty = getattr(self.stdout, "isatty", None)
        return bool(isatty and isatty())

    def emit(
        self,
        rows: Iterable[Mapping[str, Any]],
        columns: Sequence[Column],
        fmt: str,
        *,
        title: str | None = None,
        empty: str = "Nothing to show.",
    ) -> None:
        """Write `rows`: a table of `columns`, JSON of the whole rows, or CSV of `columns`."""
        rows = list(rows)
        if fmt == "json":
            self.emit_json(rows)
        elif fmt == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow([c.key for c in columns])
            for row in rows:
                writer.writerow(["" if row.get(c.key) is None else _csv_cell(row.get(c.key)) for c in columns])
            self.stdout.write(buffer.getvalue(), ending="")
        elif not rows:
            self.stdout.write(empty)
        else:
            table = Table(title=title, header_style="bold", show_lines=False)
            for column in columns:
                table.add_column(column.header, justify=column.justify, overflow="fold")
            for row in rows:
                cells = []
                for column in columns:
                    text = format_cell(row.get(column.key))
                    style = column.style(row.get(column.key)) if column.style else None
                    cells.append(f"[{style}]{escape(text)}[/]" if style else escape(text))
                table.add_row(*cells)
            self.print_rich(table)

    def emit_json(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False))

    def print_rich(self, renderable: Any) -> None:
        """Render with rich into the command's stdout: colour and the terminal's width on
        a terminal, plain text and a wide fixed width otherwise (pipes, files, tests)."""
        tty = self.is_terminal()
        width = shutil.get_terminal_size().columns if tty else 200
        buffer = io.StringIO()
        console = Console(
            file=buffer,
            force_terminal=tty,
            color_system="auto" if tty else None,
            no_color=not tty,
            width=width,
            highlight=False,
        )
        console.print(renderable)
        self.stdout.write(buffer.getvalue(), ending="")


def _csv_cell(value: Any) -> str:
    if isinstance(value, Mapping | list):
        return json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
