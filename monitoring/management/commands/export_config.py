"""`manage.py export_config [--output FILE] [--include-secrets]`: the database in the format
of monitoring-config.yaml; secrets are masked unless asked for."""

import os

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring.config_io import ExportError, export_config_text


class Command(BaseCommand):
    help = "Write the configuration in the monitoring-config.yaml format (to stdout or --output)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="Write to this file (mode 600) instead of stdout.")
        parser.add_argument(
            "--include-secrets",
            action="store_true",
            help="Write channel secrets in plain text instead of the mask (API keys are only stored hashed).",
        )

    def handle(self, *args, **options) -> None:
        try:
            text = export_config_text(include_secrets=options["include_secrets"])
        except ExportError as exc:
            raise CommandError(str(exc)) from None
        output = options["output"]
        if not output:
            self.stdout.write(text, ending="")
            return
        try:
            # Readable by the owner only, even when the file existed: it may hold secrets.
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
        masked = "with secrets in plain text" if options["include_secrets"] else "secrets masked"
        self.stdout.write(f"Wrote {output} ({masked}).")
