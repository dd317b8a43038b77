"""`manage.py export_audit_log [--since T] [--until T] [--source S] [--output FILE]`: the audit
log as JSON lines, oldest first, with each entry's hashes so the chain can be checked anywhere."""

import json
import os

from django.core.serializers.json import DjangoJSONEncoder
from rest_framework.exceptions import ValidationError

from monitoring.api_audit import AuditLogEntrySerializer, filter_audit_log
from monitoring.cli import MonitoringCommand, usage_error


class Command(MonitoringCommand):
    help = "Export the audit log as JSON lines (one entry per line, oldest first)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--since", help="ISO 8601 time with offset: entries at or after it.")
        parser.add_argument("--until", help="ISO 8601 time with offset: entries before it.")
        parser.add_argument("--source", help="admin, api, dashboard, cli, system (comma-separated).")
        parser.add_argument("--action", help="create, update, delete, login, login_failed... (comma-separated).")
        parser.add_argument("--actor", help="Only this actor's entries.")
        parser.add_argument("--output", "-o", help="Write to this file (mode 600) instead of standard output.")

    def handle(self, *args, **options) -> None:
        params = {name: options[name] for name in ("since", "until", "source", "action", "actor") if options[name]}
        try:
            entries = filter_audit_log(params).order_by("id")
        except ValidationError as exc:
            raise usage_error(f"Error: {exc.detail}") from None
        if options["output"]:
            descriptor = os.open(options["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            stream = os.fdopen(descriptor, "w", encoding="utf-8")
        else:
            stream = None
        count = 0
        try:
            for entry in entries.iterator(chunk_size=2000):
                line = json.dumps(AuditLogEntrySerializer(entry).data, cls=DjangoJSONEncoder, ensure_ascii=False)
                if stream is not None:
                    stream.write(line + "\n")
                else:
                    self.stdout.write(line)
                count += 1
        finally:
            if stream is not None:
                stream.close()
        if options["output"]:
            self.stderr.write(f"Exported {count} audit log entries to {options['output']}.")
