"""Keeps every answer under /api/ in JSON: Django's own 404/405/413/500 pages are HTML,
and a monitoring client should never have to parse one."""

import logging
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError

from .api_frame import json_error

log = logging.getLogger("api")

API_PREFIXES = ("/api/", "/prometheus/api/")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path == "/api"


def _is_json(response: HttpResponse) -> bool:
    return "json" in response.get("Content-Type", "")


def _too_large(request: HttpRequest) -> HttpResponse | None:
    """413 before the body is read. DRF's parsers read the stream themselves, past
    Django's DATA_UPLOAD_MAX_MEMORY_SIZE check, so the API enforces the limit here."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw)
    except ValueError:
        return json_error(400, f"Invalid Content-Length header {raw!r}.")
    if limit is not None and length > limit:
        return json_error(
            413, f"The request body is {length} bytes; the server accepts at most {limit}.", {"max_bytes": limit}
        )
    return None


def _error_message(request: HttpRequest, response: HttpResponse) -> str:
    code = response.status_code
    if code == 404:
        return f"No API endpoint at {request.path}."
    if code == 405:
        return f"Method {request.method} is not allowed on {request.path}."
    if code == 403 and not response.streaming and b"CSRF" in response.content[:2000]:
        return "CSRF check failed: send the CSRF token or use an API key."
    try:
        return f"{HTTPStatus(code).phrase}."
    except ValueError:
        return "Request failed."


class ApiErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        api = is_api_path(request.path)
        if api:
            refused = _too_large(request)
            if refused is not None:
                return refused
        response = self.get_response(request)
        if not api or response.status_code < 400 or _is_json(response):
            return response
        converted = json_error(response.status_code, _error_message(request, response))
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in response:
                converted[header] = response[header]
        return converted

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path):
            return None
        if isinstance(exception, RequestDataTooBig):
            return json_error(413, "The request body is larger than the server accepts.")
        if isinstance(exception, (Http404, PermissionDenied, BadRequest, SuspiciousOperation, MultiPartParserError)):
            return None  # Django answers these with 404/403/400, which __call__ turns into JSON
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "Internal server error; the error is in the server log.")
