"""Log-in for the dashboard: Django's LoginView with failed attempts counted per client
address and per account in the shared cache, so guessing is slow on every web process."""

import hashlib
import math

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from monitoring.audit import client_ip

FAILURES_KEY = "login-failures:{kind}:{ident}"


def _keys(request: HttpRequest, username: str) -> list[str]:
    # Usernames are hashed (and case-folded: "Admin" and "admin" are one account to guess at).
    account = hashlib.sha256(username.strip().casefold().encode()).hexdigest()[:32]
    return [
        FAILURES_KEY.format(kind="ip", ident=client_ip(request) or "unknown"),
        FAILURES_KEY.format(kind="account", ident=account),
    ]


def login_blocked(request: HttpRequest, username: str) -> bool:
    """Whether this address or this account has used up its failed attempts for the window."""
    ip_key, account_key = _keys(request, username)
    counts = cache.get_many([ip_key, account_key])
    return (
        counts.get(ip_key, 0) >= settings.LOGIN_FAILURES_PER_IP
        or counts.get(account_key, 0) >= settings.LOGIN_FAILURES_PER_ACCOUNT
    )


def record_login_failure(request: HttpRequest, username: str) -> None:
    """Count one failed attempt against the address and the account. The window starts at
    the first failure (cache.add), so steady guessing cannot keep extending it."""
    for key in _keys(request, username):
        cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW)


def clear_account_failures(request: HttpRequest, username: str) -> None:
    cache.delete(_keys(request, username)[1])


class RateLimitedLoginView(LoginView):
    """Answers 429 without checking the password once the address or the account is over
    its limit; the message is the same for unknown users and wrong passwords."""

    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        username = request.POST.get("username", "")
        if login_blocked(request, username):
            # An unbound form: binding would authenticate, which is what is refused here.
            minutes = math.ceil(settings.LOGIN_FAILURE_WINDOW / 60)
            context = self.get_context_data(
                form=self.get_form_class()(request),
                throttle_message=f"Too many failed log-ins. Try again in {minutes} minutes.",
            )
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: object) -> HttpResponse:
        record_login_failure(self.request, self.request.POST.get("username", ""))
        return super().form_invalid(form)

    def form_valid(self, form: object) -> HttpResponse:
        clear_account_failures(self.request, self.request.POST.get("username", ""))
        return super().form_valid(form)
