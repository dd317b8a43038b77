"""`manage.py createapikey --user U --name N [--expires-days D] [--read-only]`: create an
API key and print it once, alone on the last line, so scripts can read it with `tail -1`."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from monitoring.apikeys import ApiKeyError, create_api_key
from monitoring.audit import cli_actor, record_audit, snapshot
from monitoring.choices import AuditAction, AuditSource
from monitoring.roles import user_role


class Command(BaseCommand):
    help = "Create an API key for a user and print it once (on the last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="Username of the key's owner; the key has their role.")
        parser.add_argument("--name", required=True, help="A name for the key (shown in the admin and the audit log).")
        parser.add_argument(
            "--expires-days", type=int, default=None, help="Days until the key expires (default never)."
        )
        parser.add_argument("--read-only", action="store_true", help="The key only reads, whatever the user's role.")

    def handle(self, *args, **options) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"There is no user {options['user']!r}.", returncode=2)
        days = options["expires_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-days must be at least 1.", returncode=2)
        expires_at = timezone.now() + timedelta(days=days) if days is not None else None
        try:
            new = create_api_key(user=user, name=options["name"], expires_at=expires_at, read_only=options["read_only"])
        except ApiKeyError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        record_audit(
            actor=cli_actor(),
            source=AuditSource.CLI,
            action=AuditAction.CREATE,
            obj=new.api_key,
            after=snapshot(new.api_key),
        )
        role = user_role(user)
        access = "read-only" if new.api_key.read_only else (role.value if role else "no role: every call is refused")
        until = f"expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "never expires"
        self.stdout.write(f"API key {new.api_key.name!r} for {user.get_username()} ({access}), {until}.")
        self.stdout.write("Store it now: it is shown only this once. The key:")
        self.stdout.write(new.plain)
