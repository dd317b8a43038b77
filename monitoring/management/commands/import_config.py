"""`manage.py import_config FILE [--dry-run]`: create or update what monitoring-config.yaml
describes. An invalid file is refused whole (exit code 2, each problem on stderr)."""

import getpass

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring.config_io import Action, ConfigError, import_config_file


def shell_user() -> str:
    try:
        return f"{getpass.getuser()} (shell)"
    except (OSError, KeyError):  # no login name in a bare container
        return "shell"


class Command(BaseCommand):
    help = (
        "Import a monitoring-config.yaml: settings, notification channels, targets, alert rules, health "
        "checks, escalation policies, API keys and roles. Objects are matched by their keys; nothing is deleted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The YAML file to import.")
        parser.add_argument("--dry-run", action="store_true", help="Print what would change and write nothing.")

    def handle(self, *args, **options) -> None:
        path, dry_run = options["file"], options["dry_run"]
        try:
            result = import_config_file(path, dry_run=dry_run, actor=shell_user())
        except ConfigError as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            count = len(exc.problems)
            raise CommandError(
                f"{path} was not imported: {count} problem{'s' if count != 1 else ''}; nothing was written.",
                returncode=2,
            ) from None
        plan = result.plan
        for warning in plan.warnings:
            self.stderr.write(f"warning: {warning}")
        prefix = "would " if dry_run else ""
        for change in plan.changes:
            if change.action != Action.UNCHANGED or options["verbosity"] >= 2:
                self.stdout.write(prefix + change.describe())
        created, updated, unchanged = (plan.count(a) for a in (Action.CREATE, Action.UPDATE, Action.UNCHANGED))
        if not plan.has_changes:
            self.stdout.write(f"No changes: the database already matches {path} ({unchanged} objects unchanged).")
        elif dry_run:
            self.stdout.write(
                f"Dry run of {path}: would create {created}, update {updated}, leave {unchanged} unchanged; "
                "nothing was written."
            )
        else:
            self.stdout.write(f"Imported {path}: {created} created, {updated} updated, {unchanged} unchanged.")
