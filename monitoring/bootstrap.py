"""First start of an installation: import the demo configuration and create the `admin`
user. "First start" means no user named `admin` exists yet, so the admin is created last:
a failed import leaves the next start to try again."""

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import transaction

from .choices import Role

log = logging.getLogger("bootstrap")

ADMIN_USERNAME = "admin"


class BootstrapError(Exception):
    pass


@dataclass(frozen=True)
class BootstrapResult:
    first_start: bool
    admin_password: str | None = None  # set only when it was generated now: show it once
    password_source: str = ""


def is_first_start() -> bool:
    return not User.objects.filter(username=ADMIN_USERNAME).exists()


def bootstrap(*, demo_config: Path | str | None, admin_password: str = "") -> BootstrapResult:
    """On a first start, import `demo_config` (None or "" skips it) and create the admin
    user with `admin_password`, or a generated password returned in the result. Later
    starts change nothing."""
    if not is_first_start():
        return BootstrapResult(first_start=False)
    if demo_config:
        path = Path(demo_config)
        if not path.is_file():
            raise BootstrapError(f"demo configuration {path} does not exist (MONITORING_DEMO_CONFIG)")
        log.info("first start: importing the demo configuration %s", path)
        call_command("import_config", str(path))
    generated = not admin_password
    password = admin_password or secrets.token_urlsafe(12)
    with transaction.atomic():
        user = User.objects.create_superuser(ADMIN_USERNAME, email="", password=password)
        user.groups.add(Group.objects.get(name=Role.ADMIN.value))
    log.info("first start: created the admin user %r", ADMIN_USERNAME)
    return BootstrapResult(
        first_start=True,
        admin_password=password if generated else None,
        password_source="generated" if generated else "MONITORING_ADMIN_PASSWORD",
    )
