"""API of health checking: checks (read: viewer; write: admin; run: operator), heartbeat
pings (no key: the uuid is the secret), targets with their health and history."""

import copy
import math

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet

from monitoring.api_frame import ok
from monitoring.api_pagination import EnvelopePagination
from monitoring.audit import audit_request, changed_fields, mask_secrets, snapshot
from monitoring.choices import AuditAction, AuditSource, Role
from monitoring.discovery.devices import device_report_from_query, note_devices_seen
from monitoring.models import MonitoringTarget
from monitoring.permissions import ReadViewerWriteAdmin
from monitoring.roles import has_role

from .choices import CheckKind, HealthStatus, PingKind
from .history import target_health
from .models import HealthCheck, HealthCheckResult
from .services import record_ping, run_checks_now

MAX_HISTORY_HOURS = 24 * 90
MAX_HISTORY_LIMIT = 10_000
# Bookkeeping of the workers, not a person's change: left out of audit before/after.
AUDIT_EXCLUDE = (
    "updated_at",
    "status",
    "consecutive_failures",
    "consecutive_successes",
    "last_checked_at",
    "next_due_at",
    "running_since",
    "claim_token",
    "last_result",
    "last_ping_at",
    "last_ping_kind",
    "last_start_at",
)


def ping_url(check: HealthCheck) -> str:
    return f"{settings.MONITORING_PUBLIC_URL.rstrip('/')}/api/heartbeat/{check.ping_uuid}"


class ResultSerializer(serializers.ModelSerializer):
    check_id = serializers.IntegerField(source="health_check_id", read_only=True)

    class Meta:
        model = HealthCheckResult
        fields = ["id", "check_id", "status", "response_time", "message", "details", "checked_at"]
        read_only_fields = fields


class TargetRefField(serializers.SlugRelatedField):
    """A target by its slug (the key of the config file)."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="slug", queryset=MonitoringTarget.objects.all(), **kwargs)


class HealthCheckSerializer(serializers.ModelSerializer):
    """A check as the API shows it: its definition, current state and last result. The
    config's secret-looking values (an Authorization header...) and the heartbeat ping URL
    are shown to admins only."""

    target = TargetRefField(required=False, allow_null=True)
    target_name = serializers.CharField(source="target.name", read_only=True, default=None)
    running = serializers.SerializerMethodField()
    ping_url = serializers.SerializerMethodField()
    last_result = ResultSerializer(read_only=True)

    class Meta:
        model = HealthCheck
        fields = [
            "id",
            "key",
            "name",
            "kind",
            "target",
            "target_name",
            "enabled",
            "config",
            "interval",
            "timeout",
            "failure_threshold",
            "success_threshold",
            "period",
            "grace",
            "status",
            "consecutive_failures",
            "consecutive_successes",
            "last_checked_at",
            "next_due_at",
            "running",
            "last_ping_at",
            "ping_url",
            "invalid_reason",
            "last_result",
        ]
        read_only_fields = [
            "id",
            "status",
            "consecutive_failures",
            "consecutive_successes",
            "last_checked_at",
            "next_due_at",
            "last_ping_at",
            "invalid_reason",
        ]

    def _is_admin(self) -> bool:
        request = self.context.get("request")
        return request is not None and has_role(request.user, Role.ADMIN)

    def get_running(self, check: HealthCheck) -> bool:
        return check.running_since is not None

    def get_ping_url(self, check: HealthCheck) -> str | None:
        return ping_url(check) if check.kind == CheckKind.HEARTBEAT and self._is_admin() else None

    def to_representation(self, check: HealthCheck) -> dict:
        data = super().to_representation(check)
        if not self._is_admin():
            data["config"] = mask_secrets(data["config"])
        return data

    def validate(self, attrs: dict) -> dict:
        """The model's own rules (config validated for its kind and target): the admin and
        this API refuse the same checks for the same reasons."""
        check = copy.copy(self.instance) if self.instance is not None else HealthCheck()
        for name, value in attrs.items():
            setattr(check, name, value)
        try:
            check.clean()
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from None
        return attrs


class RunRequestSerializer(serializers.Serializer):
    check_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), required=False, allow_empty=False
    )


RUN_RESPONSE = inline_serializer(
    "HealthCheckRunResponse",
    {
        "success": serializers.BooleanField(),
        "results": ResultSerializer(many=True),
        "queued": inline_serializer(
            "QueuedChecks", {"task_id": serializers.CharField(), "check_ids": serializers.ListField()}, many=True
        ),
        "skipped": inline_serializer(
            "SkippedCheck", {"check_id": serializers.IntegerField(), "reason": serializers.CharField()}, many=True
        ),
    },
)


class HealthCheckPagination(EnvelopePagination):
    items_key = "health_checks"


class HealthCheckViewSet(ViewSet):
    """`/api/health-checks`: list and read for viewers, create/change/delete for admins,
    `POST /api/health-checks/run` for operators."""

    permission_classes = [ReadViewerWriteAdmin]
    operator_actions = ("run",)
    serializer_class = HealthCheckSerializer
    pagination_class = HealthCheckPagination
    sparse_fields = True

    def _serialize(self, checks, many: bool = False):
        return HealthCheckSerializer(checks, many=many, context={"request": self.request}).data

    def _get(self, pk: int) -> HealthCheck:
        return get_object_or_404(HealthCheck.objects.for_listing(), pk=pk)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=HealthStatus.values),
            OpenApiParameter("kind", str, enum=CheckKind.values),
            OpenApiParameter("target", str, description="A target's slug."),
            OpenApiParameter("enabled", bool),
        ],
        responses=HealthCheckSerializer(many=True),
    )
    def list(self, request):
        checks = HealthCheck.objects.for_listing().order_by("name", "pk")
        params = request.query_params
        if params.get("status"):
            if params["status"] not in HealthStatus.values:
                raise ValidationError({"status": [f"Must be one of {', '.join(HealthStatus.values)}."]})
            checks = checks.filter(status=params["status"])
        if params.get("kind"):
            if params["kind"] not in CheckKind.values:
                raise ValidationError({"kind": [f"Must be one of {', '.join(CheckKind.values)}."]})
            checks = checks.filter(kind=params["kind"])
        if params.get("target"):
            checks = checks.filter(target__slug=params["target"])
        if params.get("enabled"):
            if params["enabled"] not in ("true", "false"):
                raise ValidationError({"enabled": ["true or false."]})
            checks = checks.filter(enabled=params["enabled"] == "true")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(checks, request, view=self)
        return paginator.get_paginated_response(self._serialize(page, many=True))

    @extend_schema(
        responses=inline_serializer(
            "HealthCheckOne", {"success": serializers.BooleanField(), "health_check": HealthCheckSerializer()}
        )
    )
    def retrieve(self, request, pk: int):
        return ok(health_check=self._serialize(self._get(pk)))

    @extend_schema(
        request=HealthCheckSerializer,
        responses={
            201: inline_serializer(
                "HealthCheckCreated", {"success": serializers.BooleanField(), "health_check": HealthCheckSerializer()}
            )
        },
    )
    def create(self, request):
        serializer = HealthCheckSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            check = serializer.save()
            audit_request(
                request,
                source=AuditSource.API,
                action=AuditAction.CREATE,
                obj=check,
                after=snapshot(check, exclude=AUDIT_EXCLUDE),
            )
        return ok(status.HTTP_201_CREATED, health_check=self._serialize(self._get(check.pk)))

    @extend_schema(
        request=HealthCheckSerializer,
        responses=inline_serializer(
            "HealthCheckUpdated", {"success": serializers.BooleanField(), "health_check": HealthCheckSerializer()}
        ),
    )
    def update(self, request, pk: int):
        return self._change(request, pk, partial=False)

    @extend_schema(
        request=HealthCheckSerializer,
        responses=inline_serializer(
            "HealthCheckPatched", {"success": serializers.BooleanField(), "health_check": HealthCheckSerializer()}
        ),
    )
    def partial_update(self, request, pk: int):
        return self._change(request, pk, partial=True)

    def _change(self, request, pk: int, *, partial: bool):
        with transaction.atomic():
            check = get_object_or_404(HealthCheck.objects.select_for_update(of=("self",)), pk=pk)
            before = snapshot(check, exclude=AUDIT_EXCLUDE)
            serializer = HealthCheckSerializer(check, data=request.data, partial=partial, context={"request": request})
            serializer.is_valid(raise_exception=True)
            # A config the API accepted is valid: an import's reason for disabling it is gone.
            check = serializer.save(invalid_reason="")
            old, new = changed_fields(before, snapshot(check, exclude=AUDIT_EXCLUDE))
            if new:
                action = AuditAction.UPDATE
                if set(new) == {"enabled"}:
                    action = AuditAction.ENABLE if new["enabled"] else AuditAction.DISABLE
                audit_request(request, source=AuditSource.API, action=action, obj=check, before=old, after=new)
        return ok(health_check=self._serialize(self._get(check.pk)))

    @extend_schema(
        responses=inline_serializer(
            "HealthCheckDeleted", {"success": serializers.BooleanField(), "deleted": serializers.IntegerField()}
        )
    )
    def destroy(self, request, pk: int):
        with transaction.atomic():
            check = get_object_or_404(HealthCheck, pk=pk)
            before = snapshot(check, exclude=AUDIT_EXCLUDE)
            audit_request(request, source=AuditSource.API, action=AuditAction.DELETE, obj=check, before=before)
            check.delete()
        return ok(deleted=int(pk))

    @extend_schema(request=RunRequestSerializer, responses=RUN_RESPONSE)
    def run(self, request):
        """Run all enabled checks, or `{"check_ids": [...]}`. Checks that finish within the
        request timeout come back as results; the others as the tasks that run them."""
        body = RunRequestSerializer(data=request.data if request.body else {})
        body.is_valid(raise_exception=True)
        check_ids = body.validated_data.get("check_ids")
        audit_request(
            request,
            source=AuditSource.API,
            action=AuditAction.RUN,
            object_type="healthchecks.healthcheck",
            object_repr=f"run {len(check_ids)} check(s)" if check_ids else "run all checks",
            after={"check_ids": check_ids if check_ids else "all"},
        )
        report = run_checks_now(check_ids=check_ids, now=timezone.now())
        return ok(
            results=ResultSerializer(report.results, many=True).data,
            queued=[{"task_id": q.task_id, "check_ids": list(q.check_ids)} for q in report.queued],
            skipped=[{"check_id": pk, "reason": reason} for pk, reason in sorted(report.skipped.items())],
        )


class HeartbeatView(APIView):
    """`GET|POST /api/heartbeat/{uuid}` (and `/fail`, `/start`): a device reports in. No API
    key: the uuid is the secret. A body (text, at most 10 kB kept) is stored with the result."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_scope = "heartbeat"  # per client address, a budget of its own
    kind = PingKind.SUCCESS

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "HeartbeatResponse",
            {
                "success": serializers.BooleanField(),
                "check": serializers.CharField(),
                "status": serializers.CharField(),
            },
        ),
    )
    def post(self, request, ping_uuid):
        body = request.body.decode("utf-8", errors="replace") if request.method == "POST" else ""
        receipt = record_ping(ping_uuid=ping_uuid, kind=self.kind, now=timezone.now(), body=body)
        if receipt is None:
            raise NotFound("No heartbeat check has this URL.")
        # `?device_id=...` (with kind, firmware_version, parent): device self-registration.
        device = device_report_from_query(request.query_params)
        if device is not None:
            note_devices_seen({device.device_id: device})
        return ok(check=receipt.check.key, ping=self.kind.value, status=receipt.check.status)

    @extend_schema(
        request=None, responses=inline_serializer("HeartbeatGetResponse", {"success": serializers.BooleanField()})
    )
    def get(self, request, ping_uuid):
        return self.post(request, ping_uuid)


class HeartbeatFailView(HeartbeatView):
    kind = PingKind.FAIL


class HeartbeatStartView(HeartbeatView):
    kind = PingKind.START


def _target_json(target: MonitoringTarget, status_value: str) -> dict:
    return {
        "id": target.pk,
        "slug": target.slug,
        "name": target.name,
        "kind": target.kind,
        "endpoint": target.endpoint,
        "enabled": target.enabled,
        "parent": target.parent.slug if target.parent_id else None,
        "status": status_value,
    }


def _positive_number(raw: str | None, name: str, default: float, maximum: float) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError({name: ["Must be a number."]}) from None
    if not math.isfinite(value) or value <= 0 or value > maximum:
        raise ValidationError({name: [f"Must be more than 0 and at most {maximum:g}."]})
    return value


class TargetHealthView(APIView):
    """`GET /api/targets/{target_id}/health?hours=24`: the target's checks with their results
    over the window and the uptime percentage. `target_id` is the id or the slug."""

    @extend_schema(
        parameters=[
            OpenApiParameter("hours", float, description="The window, in hours (default 24)."),
            OpenApiParameter("limit", int, description="Results per check, newest first (default 1000)."),
        ],
        responses=inline_serializer(
            "TargetHealth",
            {
                "success": serializers.BooleanField(),
                "target": serializers.DictField(),
                "health": serializers.DictField(),
            },
        ),
    )
    def get(self, request, target_id: str):
        by_id = target_id.isascii() and target_id.isdigit() and len(target_id) < 19
        lookup = {"pk": int(target_id)} if by_id else {"slug": target_id}
        target = MonitoringTarget.objects.select_related("parent").filter(**lookup).first()
        if target is None:
            raise NotFound(f"No target {target_id!r}.")
        hours = _positive_number(request.query_params.get("hours"), "hours", 24.0, MAX_HISTORY_HOURS)
        limit = int(_positive_number(request.query_params.get("limit"), "limit", 1000, MAX_HISTORY_LIMIT))
        health = target_health(target, now=timezone.now(), hours=hours, limit=limit)
        return ok(
            target=_target_json(target, health.status),
            health={
                "status": health.status,
                "hours": hours,
                "since": health.since,
                "until": health.until,
                "uptime_percentage": health.uptime,
                "checks": [
                    {
                        "id": item.check.pk,
                        "key": item.check.key,
                        "name": item.check.name,
                        "kind": item.check.kind,
                        "enabled": item.check.enabled,
                        "status": item.check.status,
                        "uptime_percentage": item.uptime,
                        "results_count": item.results_total,
                        "results": ResultSerializer(item.results, many=True).data,
                    }
                    for item in health.checks
                ],
            },
        )
