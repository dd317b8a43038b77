"""What the alerting API's views share: the audit context of a request, the documented
error responses, and limit/offset pagination in the envelope."""

from collections import OrderedDict

from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination

from monitoring.api_frame import ErrorSerializer, ok
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


class EnvelopePagination(LimitOffsetPagination):
    """limit/offset pagination in the envelope: `{"success": true, <items_key>: [...],
    "count": N, "next": url|null, "previous": url|null}`."""

    default_limit = 100
    max_limit = 1000
    items_key = "items"

    def get_paginated_response(self, data):
        return ok(
            **OrderedDict(
                [
                    (self.items_key, data),
                    ("count", self.count),
                    ("next", self.get_next_link()),
                    ("previous", self.get_previous_link()),
                ]
            )
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["success", self.items_key, "count", "next"],
            "properties": {
                "success": {"type": "boolean"},
                self.items_key: schema,
                "count": {"type": "integer"},
                "next": {"type": "string", "format": "uri", "nullable": True},
                "previous": {"type": "string", "format": "uri", "nullable": True},
            },
        }


class AlertPagination(EnvelopePagination):
    items_key = "alerts"


class RulePagination(EnvelopePagination):
    items_key = "rules"


class SilencePagination(EnvelopePagination):
    items_key = "silences"
