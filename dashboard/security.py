"""Security headers the dashboard needs beyond Django's own: a Content-Security-Policy that
allows no inline script, and session/CSRF cookies marked Secure whenever the request came
over HTTPS."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

# Every script and style comes from our own static files; websockets go back to the same
# origin ('self' covers ws:/wss: of the page's host in CSP level 3).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Third-party pages whose templates carry inline scripts and styles we do not control
# (Django's admin, Swagger UI and ReDoc): they keep every other header.
CSP_EXEMPT_PREFIXES = ("/admin/", "/api/schema/")


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(CSP_EXEMPT_PREFIXES):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        if request.is_secure():
            # Whatever the settings say, a cookie set over HTTPS never travels over HTTP.
            for name in (settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME):
                if name in response.cookies:
                    response.cookies[name]["secure"] = True
        return response
