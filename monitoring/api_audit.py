"""`GET /api/audit-log` (admin): the audit trail, newest first, filtered by actor, source,
action, object and time, with limit/offset pagination in the envelope."""

from datetime import datetime

from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.generics import ListAPIView

from alerts.api.common import READ_ERRORS, EnvelopePagination

from .choices import AuditAction, AuditSource
from .models import AuditLogEntry
from .permissions import IsAdmin

FILTERS = ("actor", "source", "action", "object_type", "object_id", "api_key_name", "ip", "since", "until")


class AuditLogEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditLogEntry
        fields = [
            "id",
            "at",
            "actor_name",
            "source",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "before",
            "after",
            "api_key_name",
            "ip",
            "prev_hash",
            "entry_hash",
        ]
        read_only_fields = fields


class AuditLogPagination(EnvelopePagination):
    items_key = "entries"


def _moment(name: str, raw: str) -> datetime:
    moment = parse_datetime(raw)
    if moment is None or moment.tzinfo is None:
        raise exceptions.ValidationError({name: ["An ISO 8601 time with its offset, e.g. 2026-03-01T00:00:00Z."]})
    return moment


def filter_audit_log(params) -> QuerySet[AuditLogEntry]:
    """Entries matching the query parameters (each optional; unknown ones are a 400)."""
    unknown = set(params) - {*FILTERS, "limit", "offset"}
    if unknown:
        raise exceptions.ValidationError({name: [f"Unknown parameter; use {', '.join(FILTERS)}."] for name in unknown})
    entries = AuditLogEntry.objects.order_by("-id")
    for name, choices in (("source", AuditSource), ("action", AuditAction)):
        if params.get(name):
            values = params.get(name).split(",")
            bad = [value for value in values if value not in choices.values]
            if bad:
                raise exceptions.ValidationError({name: [f"{', '.join(bad)}: use {', '.join(choices.values)}."]})
            entries = entries.filter(**{f"{name}__in": values})
    for name, lookup in (
        ("actor", "actor_name"),
        ("object_type", "object_type"),
        ("object_id", "object_id"),
        ("api_key_name", "api_key_name"),
        ("ip", "ip"),
    ):
        if params.get(name):
            entries = entries.filter(**{lookup: params.get(name)})
    if params.get("since"):
        entries = entries.filter(at__gte=_moment("since", params.get("since")))
    if params.get("until"):
        entries = entries.filter(at__lt=_moment("until", params.get("until")))
    return entries


@extend_schema(
    parameters=[
        OpenApiParameter("actor", str, description="The actor's name (a username, or `<os user> (shell)`)."),
        OpenApiParameter("source", str, description="admin, api, dashboard, cli, system; comma-separated."),
        OpenApiParameter("action", str, description="create, update, delete, login, login_failed...; comma-separated."),
        OpenApiParameter("object_type", str, description="e.g. alerts.alertrule"),
        OpenApiParameter("object_id", str),
        OpenApiParameter("api_key_name", str),
        OpenApiParameter("ip", str),
        OpenApiParameter("since", str, description="ISO 8601 time: entries at or after it."),
        OpenApiParameter("until", str, description="ISO 8601 time: entries before it."),
    ],
    responses={200: AuditLogEntrySerializer(many=True), **READ_ERRORS},
)
class AuditLogView(ListAPIView):
    """The audit log, newest first. Admins only."""

    permission_classes = [IsAdmin]
    serializer_class = AuditLogEntrySerializer
    pagination_class = AuditLogPagination

    def get_queryset(self):
        return filter_audit_log(self.request.query_params)
