"""`/api/notifications`: the notification history (viewers) and test messages through chosen
channels (operators). No channel setting, let alone a secret, is ever returned."""

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from alerts.api.common import READ_ERRORS, WRITE_ERRORS, EnvelopePagination, audit_context
from monitoring.api_frame import ok
from monitoring.permissions import IsOperator, IsViewer

from .choices import NotificationStatus
from .models import Notification
from .services import UnknownChannelError, channels_named, notification_history, send_test_notifications

MAX_HOURS = 24 * 366


class NotificationSerializer(serializers.ModelSerializer):
    """One outbox row, as the history lists it."""

    channel = serializers.CharField(source="channel.key")
    channel_kind = serializers.CharField(source="channel.kind")
    alert_id = serializers.IntegerField(allow_null=True)
    rule = serializers.SerializerMethodField()
    grouped_with = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = [
            "id",
            "alert_id",
            "rule",
            "channel",
            "channel_kind",
            "event",
            "escalation_step",
            "status",
            "attempts",
            "next_attempt_at",
            "last_error",
            "permanent_failure",
            "suppressed_reason",
            "idempotency_key",
            "grouped_with",
            "created_at",
            "sent_at",
        ]
        read_only_fields = fields

    def get_rule(self, row: Notification) -> str | None:
        return row.alert.rule.key if row.alert_id else None

    def get_grouped_with(self, row: Notification) -> int:
        """How many notifications shared this one's message (0: it went alone)."""
        size = (row.payload or {}).get("group_size", 0)
        return max(int(size) - 1, 0) if size else 0


class NotificationFilterSerializer(serializers.Serializer):
    """The query parameters of `GET /api/notifications`."""

    hours = serializers.IntegerField(
        required=False, default=24, min_value=1, max_value=MAX_HOURS, help_text="Created in the last N hours (24)."
    )
    channel = serializers.CharField(required=False, help_text="A channel's key or id.")
    status = serializers.CharField(
        required=False, help_text=f"Comma-separated, any of: {', '.join(NotificationStatus.values)}."
    )
    alert = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1, help_text="An alert's id.")

    def validate_status(self, value: str) -> list[str]:
        statuses = [s.strip() for s in value.split(",") if s.strip()]
        unknown = [s for s in statuses if s not in NotificationStatus.values]
        if unknown or not statuses:
            raise serializers.ValidationError(
                f"Unknown status {', '.join(unknown) or value!r}; use {', '.join(NotificationStatus.values)}."
            )
        return statuses


class TestRequestSerializer(serializers.Serializer):
    channels = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        default=list,
        max_length=50,
        help_text='Channel keys (or kinds), e.g. ["email", "slack"]; empty: every enabled channel.',
    )


class TestOutcomeSerializer(serializers.Serializer):
    channel = serializers.CharField()
    kind = serializers.CharField()
    enabled = serializers.BooleanField()
    status = serializers.ChoiceField(choices=[NotificationStatus.SENT, NotificationStatus.FAILED])
    error = serializers.CharField(allow_blank=True)
    notification_id = serializers.IntegerField()
    duration_ms = serializers.IntegerField()


class NotificationPagination(EnvelopePagination):
    items_key = "notifications"


class NotificationViewSet(viewsets.GenericViewSet):
    """Notification history; test messages."""

    serializer_class = NotificationSerializer
    pagination_class = NotificationPagination
    sparse_fields = True

    def get_permissions(self) -> list:
        return [IsOperator()] if self.action == "test" else [IsViewer()]

    def get_queryset(self) -> QuerySet:
        params = NotificationFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        query = params.validated_data
        return notification_history(
            since=timezone.now() - timedelta(hours=query["hours"]),
            channel=query.get("channel"),
            statuses=query.get("status", ()),
            alert_id=query.get("alert"),
        )

    @extend_schema(
        parameters=[NotificationFilterSerializer], responses={200: NotificationSerializer(many=True), **READ_ERRORS}
    )
    def list(self, request: Request) -> Response:
        """The notification history: the last 24 hours (`hours`), newest first, filtered by
        channel, status and alert, in pages (`limit`, `offset`)."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        request=TestRequestSerializer,
        responses={
            200: inline_serializer(
                "NotificationTestResponse",
                {
                    "success": serializers.BooleanField(),
                    "all_sent": serializers.BooleanField(),
                    "results": TestOutcomeSerializer(many=True),
                },
            ),
            **WRITE_ERRORS,
        },
    )
    @action(detail=False, methods=["post"])
    def test(self, request: Request) -> Response:
        """Send a test message through each named channel now (operator) and answer with
        each one's outcome; a failed send is an outcome, not an error of the request."""
        body = TestRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            channels = channels_named(body.validated_data["channels"])
        except UnknownChannelError as exc:
            raise exceptions.ValidationError({"channels": [str(exc)]}) from exc
        if not channels:
            raise exceptions.ValidationError({"channels": ["There is no enabled channel to test."]})
        outcomes = send_test_notifications(
            channels=channels, user=request.user, now=timezone.now(), **audit_context(request)
        )
        results = TestOutcomeSerializer([o.as_dict() for o in outcomes], many=True).data
        return ok(all_sent=all(o.status == NotificationStatus.SENT for o in outcomes), results=results)
