"""`manage.py revokeapikey --prefix P` or `--name N [--user U]`: revoke API keys; the next
request with them is refused."""

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from monitoring.apikeys import revoke_api_key
from monitoring.audit import cli_actor, record_audit
from monitoring.choices import AuditAction, AuditSource
from monitoring.models import ApiKey


class Command(BaseCommand):
    help = "Revoke API keys by prefix (the first 12 characters of the key) or by name."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--prefix", help="The key's prefix, as the admin lists it (e.g. mon_AbCdEfGh).")
        which.add_argument("--name", help="The key's name; with several matches, every one is revoked.")
        parser.add_argument("--user", help="Only keys of this user.")

    def handle(self, *args, **options) -> None:
        keys = ApiKey.objects.filter(revoked_at__isnull=True).select_related("user")
        if options["prefix"]:
            keys = keys.filter(prefix=options["prefix"])
        else:
            keys = keys.filter(name=options["name"])
        if options["user"]:
            keys = keys.filter(user__username=options["user"])
        keys = list(keys)
        if not keys:
            raise CommandError("No unrevoked API key matches.", returncode=2)
        now = timezone.now()
        for key in keys:
            revoke_api_key(key, now=now)
            record_audit(
                actor=cli_actor(),
                source=AuditSource.CLI,
                action=AuditAction.REVOKE,
                obj=key,
                before={"revoked_at": None},
                after={"revoked_at": now},
                at=now,
            )
            self.stdout.write(f"Revoked {key.name!r} ({key.prefix}…) of {key.user.get_username()}.")
