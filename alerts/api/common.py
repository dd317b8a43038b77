"""What the alerting API's views share: the audit context of a request, the documented
error responses, and the pagination of each list (monitoring.api_pagination's convention)."""

from rest_framework import exceptions

from monitoring.api_frame import ErrorSerializer
from monitoring.api_pagination import EnvelopePagination
from monitoring.choices import AuditSource
from monitoring.models import ApiKey

from ..silencing import SilenceError


def audit_context(request) -> dict:
    """Who and where an API write comes from, for the audit entry."""
    key = request.auth if isinstance(request.auth, ApiKey) else None
    return {
        "source": AuditSource.API,
        "api_key_name": key.name if key else "",
        "ip": request.META.get("REMOTE_ADDR") or None,
    }


def bad_input(exc: SilenceError | ValueError, field: str = "non_field_errors") -> exceptions.ValidationError:
    return exceptions.ValidationError({getattr(exc, "field", field): [str(exc)]})


READ_ERRORS = {401: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
WRITE_ERRORS = {400: ErrorSerializer, 401: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}


class AlertPagination(EnvelopePagination):
    items_key = "alerts"


class RulePagination(EnvelopePagination):
    items_key = "rules"


class SilencePagination(EnvelopePagination):
    items_key = "silences"
