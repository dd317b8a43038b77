"""Keeps every answer under /api/ in JSON: Django's own 404/405/413/500 pages are HTML,
and a monitoring client should never have to parse one."""

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from .api_frame import json_error

log = logging.getLogger("api")

API_PREFIXES = ("/api/", "/prometheus/api/")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path == "/api"


class ApiErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not is_api_path(request.path) or response.get("Content-Type", "").startswith("application/json"):
            return response
        if response.status_code == 404:
            return json_error(404, f"No API endpoint at {request.path}.")
        if response.status_code == 405:
            return json_error(405, f"Method {request.method} is not allowed on {request.path}.")
        if response.status_code == 400 and not response.get("Content-Type", "").startswith("application/"):
            return json_error(400, "Bad request.")
        if response.status_code == 403 and "CSRF" in response.content.decode(errors="replace")[:2000]:
            return json_error(403, "CSRF check failed: send the CSRF token or use an API key.")
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path):
            return None
        if isinstance(exception, RequestDataTooBig):
            return json_error(413, "The request body is larger than the server accepts.")
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "Internal server error; the error is in the server log.")
