"""The API's response envelope: `{"success": true, ...}` on success and
`{"success": false, "error": {"code", "message", "details"}}` on every failure."""

import logging

import redis
from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from kombu.exceptions import OperationalError as BrokerError
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

log = logging.getLogger("api")

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "internal_error",
    503: "unavailable",
}


def ok(http_status: int = status.HTTP_200_OK, **payload) -> Response:
    """A success response in the original design's envelope."""
    return Response({"success": True, **payload}, status=http_status)


def error_body(http_status: int, message: str, details=None, code: str | None = None) -> dict:
    return {
        "success": False,
        "error": {
            "code": code or ERROR_CODES.get(http_status, "error"),
            "message": message,
            "details": details if details is not None else {},
        },
    }


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class ErrorSerializer(serializers.Serializer):
    """The failure envelope, for `extend_schema(responses={400: ErrorSerializer, ...})`."""

    success = serializers.BooleanField(default=False)
    error = ErrorDetailSerializer()


def json_error(http_status: int, message: str, details=None, code: str | None = None) -> JsonResponse:
    return JsonResponse(error_body(http_status, message, details, code), status=http_status)


class Conflict(exceptions.APIException):
    """An action that the object's current state does not allow (e.g. acknowledging a
    resolved alert)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's state does not allow this."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than the server accepts."
    default_code = "payload_too_large"


class ServiceUnavailable(exceptions.APIException):
    """A dependency (the database, Redis) did not answer: 503 with Retry-After, since trying
    again shortly is what the client should do; nothing of the request was kept."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.wait = settings.MONITORING_RETRY_AFTER  # DRF turns it into the Retry-After header


def _message_for(exc: exceptions.APIException, data) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "The request is invalid; see details for each field."
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])
    return str(exc.detail) if not isinstance(exc.detail, (dict, list)) else "Request failed."


def exception_handler(exc, context):
    """DRF's handler, with every error put in the envelope. Anything DRF does not know
    (a bug) becomes a logged 500 in the envelope, never a traceback."""
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, (OverflowError, DataError)):
        # A number or text the database cannot hold that validation let through (SQLite's
        # 64-bit integers, PostgreSQL's column types): the request's fault, not a crash.
        log.warning("value out of range in %s: %s", context.get("view").__class__.__name__, exc)
        exc = exceptions.ValidationError({"non_field_errors": ["A value in the request is out of range."]})
    elif isinstance(exc, (OperationalError, InterfaceError)):
        # The database is restarting or unreachable: the request can simply be sent again.
        log.warning("database unavailable in %s: %s", context.get("view").__class__.__name__, exc)
        exc = ServiceUnavailable("The database is unavailable; try again shortly.")
    elif isinstance(exc, (redis.RedisError, BrokerError)):
        log.warning("redis unavailable in %s: %s", context.get("view").__class__.__name__, exc)
        exc = ServiceUnavailable("Redis is unavailable; try again shortly.")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        log.exception("unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        set_rollback()
        return Response(error_body(500, "Internal server error; the error is in the server log."), status=500)
    data = response.data
    details = data if isinstance(exc, exceptions.ValidationError) else {}
    if isinstance(details, list):
        details = {"non_field_errors": details}
    if isinstance(exc, (exceptions.Throttled, ServiceUnavailable)) and exc.wait is not None:
        details = {"retry_after": int(exc.wait)}
    code = None
    if isinstance(exc, exceptions.APIException) and response.status_code not in ERROR_CODES:
        code = exc.default_code
    response.data = error_body(response.status_code, _message_for(exc, data), details, code)
    return response


def _is_api_request(request: HttpRequest) -> bool:
    from .middleware import is_api_path

    return is_api_path(request.path)


def bad_request(request: HttpRequest, exception: Exception, template_name: str = "400.html") -> HttpResponse:
    """handler400: JSON under /api/ (a bad Host header, a malformed request), Django's page
    elsewhere."""
    if _is_api_request(request):
        return json_error(400, "Bad request.")
    return defaults.bad_request(request, exception, template_name)


def server_error(request: HttpRequest, template_name: str = "500.html") -> HttpResponse:
    """handler500: for errors outside any view (a failing middleware), JSON under /api/."""
    if _is_api_request(request):
        return json_error(500, "Internal server error; the error is in the server log.")
    return defaults.server_error(request, template_name)
