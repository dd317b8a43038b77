"""`/api/silences`: silences by rule or label matchers."""

import math
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, mixins, serializers, status, viewsets

from monitoring.api_frame import Conflict, ok
from monitoring.permissions import ReadViewerWriteAdmin

from ..models import AlertRule, Silence
from ..silencing import (
    MAX_SILENCE_HOURS,
    SilenceError,
    create_silence,
    expire_silence,
    silence_status,
)
from .common import (
    READ_ERRORS,
    WRITE_ERRORS,
    ErrorSerializer,
    SilencePagination,
    audit_context,
    bad_input,
)


class MatcherSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    op = serializers.ChoiceField(choices=["=", "!=", "=~", "!~"], default="=")
    value = serializers.CharField(max_length=1000, allow_blank=True)


class SilenceSerializer(serializers.ModelSerializer):
    """A silence, read and created. Give `ends_at` or `duration_hours`."""

    rule = serializers.PrimaryKeyRelatedField(queryset=AlertRule.objects.all(), required=False, allow_null=True)
    matchers = MatcherSerializer(many=True, required=False)
    starts_at = serializers.DateTimeField(required=False)
    ends_at = serializers.DateTimeField(required=False)
    duration_hours = serializers.FloatField(
        write_only=True, required=False, min_value=0.0, max_value=float(MAX_SILENCE_HOURS)
    )
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = Silence
        fields = [
            "id",
            "rule",
            "matchers",
            "starts_at",
            "ends_at",
            "duration_hours",
            "comment",
            "created_by",
            "created_at",
            "status",
        ]
        read_only_fields = ["id", "created_by", "created_at", "status"]

    def get_status(self, silence: Silence) -> str:
        return silence_status(silence, self.context.get("now") or timezone.now())

    def validate(self, attrs: dict) -> dict:
        hours = attrs.pop("duration_hours", None)
        if hours is not None and "ends_at" in attrs:
            raise serializers.ValidationError({"duration_hours": ["Give ends_at or duration_hours, not both."]})
        if hours is not None:
            if not math.isfinite(hours) or hours <= 0:
                raise serializers.ValidationError({"duration_hours": ["The duration must be more than 0 hours."]})
            attrs["ends_at"] = attrs.get("starts_at", self.context["now"]) + timedelta(hours=hours)
        if "ends_at" not in attrs:
            raise serializers.ValidationError({"ends_at": ["Give ends_at or duration_hours."]})
        return attrs


class SilenceFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(required=False, choices=["active", "pending", "expired"])
    rule = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class SilenceViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Silences: viewers read; operators create and expire them. DELETE expires a silence
    (it ends now and stays as history), as Alertmanager does."""

    permission_classes = [ReadViewerWriteAdmin]
    operator_actions = ("create", "destroy")
    serializer_class = SilenceSerializer
    pagination_class = SilencePagination
    lookup_value_regex = "[0-9]+"

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "now": timezone.now()}

    def get_queryset(self):
        silences = Silence.objects.select_related("created_by").order_by("-starts_at", "-id")
        if self.action != "list":
            return silences
        params = SilenceFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        query, now = params.validated_data, timezone.now()
        if "rule" in query:
            silences = silences.filter(rule_id=query["rule"])
        status_filter = {
            "active": Q(starts_at__lte=now, ends_at__gt=now),
            "pending": Q(starts_at__gt=now),
            "expired": Q(ends_at__lte=now),
        }
        if "status" in query:
            silences = silences.filter(status_filter[query["status"]])
        return silences

    @extend_schema(parameters=[SilenceFilterSerializer], responses={200: SilenceSerializer(many=True), **READ_ERRORS})
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        responses={
            200: inline_serializer(
                "SilenceResponse", {"success": serializers.BooleanField(), "silence": SilenceSerializer()}
            ),
            **READ_ERRORS,
        }
    )
    def retrieve(self, request, *args, **kwargs):
        return ok(silence=self.get_serializer(self.get_object()).data)

    @extend_schema(
        responses={
            201: inline_serializer(
                "SilenceCreatedResponse", {"success": serializers.BooleanField(), "silence": SilenceSerializer()}
            ),
            **WRITE_ERRORS,
        }
    )
    def create(self, request, *args, **kwargs):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data, now = body.validated_data, timezone.now()
        try:
            created = create_silence(
                user=request.user,
                rule_id=data["rule"].pk if data.get("rule") else None,
                matchers=[dict(m) for m in data.get("matchers", [])],
                starts_at=data.get("starts_at"),
                ends_at=data["ends_at"],
                comment=data.get("comment", ""),
                now=now,
                **audit_context(request),
            )
        except SilenceError as exc:
            raise bad_input(exc) from exc
        return ok(status.HTTP_201_CREATED, silence=self.get_serializer(created).data)

    @extend_schema(
        responses={
            200: inline_serializer(
                "SilenceExpiredResponse",
                {
                    "success": serializers.BooleanField(),
                    "message": serializers.CharField(),
                    "silence": SilenceSerializer(),
                },
            ),
            409: ErrorSerializer,
            **READ_ERRORS,
        }
    )
    def destroy(self, request, *args, **kwargs):
        pk = self.kwargs["pk"]
        try:
            expired = expire_silence(
                silence_id=int(pk), user=request.user, now=timezone.now(), **audit_context(request)
            )
        except Silence.DoesNotExist as exc:
            raise exceptions.NotFound(f"There is no silence {pk}.") from exc
        except SilenceError as exc:
            raise Conflict(str(exc)) from exc
        return ok(message=f"Silence {pk} expired", silence=self.get_serializer(expired).data)
