"""Logins in the audit log: every successful log-in, failed log-in and log-out (the
dashboard's, the admin's) writes one entry with the client address."""

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest

from .audit import client_ip, record_audit
from .choices import AuditAction, AuditSource

MAX_ATTEMPTED_NAME = 150


def _source(request: HttpRequest | None) -> AuditSource:
    path = getattr(request, "path", "") or ""
    return AuditSource.ADMIN if path.startswith("/admin/") else AuditSource.DASHBOARD


def _ip(request: HttpRequest | None) -> str | None:
    return client_ip(request) if request is not None else None


def audit_login(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    """user_logged_in: who logged in, where from."""
    record_audit(actor=user, source=_source(request), action=AuditAction.LOGIN, obj=user, ip=_ip(request))


def audit_logout(sender: Any, request: HttpRequest | None, user: User | None, **kwargs: Any) -> None:
    """user_logged_out: who logged out (nothing for a session that was not logged in)."""
    if user is None:
        return
    record_audit(actor=user, source=_source(request), action=AuditAction.LOGOUT, obj=user, ip=_ip(request))


def audit_login_failure(sender: Any, credentials: dict, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """user_login_failed: the name tried (Django has already masked the password) and the
    address. The entry reads the same whether that account exists or not."""
    attempted = str(credentials.get("username") or credentials.get(User.USERNAME_FIELD) or "")
    record_audit(
        actor="anonymous",
        source=_source(request),
        action=AuditAction.LOGIN_FAILED,
        object_type="auth.user",
        object_repr=attempted[:MAX_ATTEMPTED_NAME],
        ip=_ip(request),
    )
