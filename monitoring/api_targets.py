"""`/api/targets`: monitored targets with their health (viewers) and their configuration
(admins: create, change, delete, each audited). A target is named by its id or its slug."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import ProtectedError, Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, serializers, status, viewsets

from healthchecks.choices import HealthStatus
from healthchecks.history import annotated_target_status, targets_with_health

from .api_frame import Conflict, ErrorSerializer, ok
from .api_pagination import EnvelopePagination, order_by_param, ordering_parameter
from .audit import audit_request, changed_fields, snapshot
from .choices import AuditAction, AuditSource, TargetKind
from .models import MonitoringTarget
from .permissions import ReadViewerWriteAdmin

ORDERING = ("name", "slug", "kind", "created_at")
MAX_SECONDS = 2**31 - 1


class CheckCountsSerializer(serializers.Serializer):
    """A target's enabled health checks by state."""

    total = serializers.IntegerField()
    healthy = serializers.IntegerField()
    warning = serializers.IntegerField()
    critical = serializers.IntegerField()
    unknown = serializers.IntegerField()


class TargetSerializer(serializers.ModelSerializer):
    """A target, read and written. `parent` is the slug of the target it depends on;
    `status` (the worst state of its enabled checks) and `checks` are read-only."""

    slug = serializers.SlugField(max_length=100)
    kind = serializers.ChoiceField(choices=TargetKind.choices, default=TargetKind.SERVICE)
    endpoint = serializers.CharField(max_length=500, required=False, allow_blank=True)
    check_interval = serializers.IntegerField(min_value=1, max_value=MAX_SECONDS, default=60)
    timeout = serializers.IntegerField(min_value=1, max_value=MAX_SECONDS, default=10)
    labels = serializers.DictField(
        child=serializers.CharField(max_length=1000, allow_blank=True), required=False, help_text="label -> value"
    )
    parent = serializers.SlugRelatedField(
        slug_field="slug", queryset=MonitoringTarget.objects.all(), required=False, allow_null=True
    )
    status = serializers.SerializerMethodField()
    checks = serializers.SerializerMethodField()

    class Meta:
        model = MonitoringTarget
        fields = [
            "id",
            "slug",
            "name",
            "kind",
            "endpoint",
            "check_interval",
            "timeout",
            "labels",
            "parent",
            "enabled",
            "status",
            "checks",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "status", "checks", "created_at", "updated_at"]

    @extend_schema_field(serializers.ChoiceField(choices=HealthStatus.choices))
    def get_status(self, target: MonitoringTarget) -> str:
        return annotated_target_status(target)

    @extend_schema_field(CheckCountsSerializer)
    def get_checks(self, target: MonitoringTarget) -> dict:
        return {
            "total": target.checks_total,
            "healthy": target.checks_healthy,
            "warning": target.checks_warning,
            "critical": target.checks_critical,
            "unknown": target.checks_unknown,
        }

    def validate_slug(self, value: str) -> str:
        others = MonitoringTarget.objects.filter(slug=value).exclude(pk=getattr(self.instance, "pk", None))
        if others.exists():
            raise serializers.ValidationError(f"A target with slug {value!r} exists already.")
        return value

    def validate(self, attrs: dict) -> dict:
        """The model's own rules (no dependency cycle): the admin and the API refuse the
        same targets for the same reasons."""
        target = MonitoringTarget(pk=getattr(self.instance, "pk", None))
        parent = attrs["parent"] if "parent" in attrs else getattr(self.instance, "parent", None)
        target.parent = parent
        try:
            target.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return attrs


class TargetFilterSerializer(serializers.Serializer):
    """The query parameters of `GET /api/targets`."""

    kind = serializers.ChoiceField(choices=TargetKind.choices, required=False)
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
    parent = serializers.SlugField(required=False, help_text="Targets depending on this one (its slug).")
    search = serializers.CharField(required=False, max_length=200, help_text="Part of the name or slug.")


class TargetPagination(EnvelopePagination):
    items_key = "targets"


def _target_response(name: str) -> serializers.Serializer:
    return inline_serializer(name, {"success": serializers.BooleanField(), "target": TargetSerializer()})


TARGET_ID = OpenApiParameter(
    "target_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The target's id or slug."
)
SKIPPED_IN_AUDIT = ("updated_at",)


class TargetViewSet(viewsets.GenericViewSet):
    """Targets: viewers read (with their health), admins configure."""

    permission_classes = [ReadViewerWriteAdmin]
    serializer_class = TargetSerializer
    pagination_class = TargetPagination
    sparse_fields = True
    lookup_url_kwarg = "target_id"

    def get_queryset(self) -> QuerySet[MonitoringTarget]:
        return targets_with_health()

    def get_object(self) -> MonitoringTarget:
        target_id = self.kwargs["target_id"]
        by_id = target_id.isascii() and target_id.isdigit() and len(target_id) < 19
        lookup = {"pk": int(target_id)} if by_id else {"slug": target_id}
        target = self.get_queryset().filter(**lookup).first()
        if target is None:
            raise exceptions.NotFound(f"No target {target_id!r}.")
        return target

    def _filtered(self) -> QuerySet[MonitoringTarget]:
        params = TargetFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        query = params.validated_data
        targets = self.get_queryset()
        if "kind" in query:
            targets = targets.filter(kind=query["kind"])
        if query.get("enabled") is not None:
            targets = targets.filter(enabled=query["enabled"])
        if "parent" in query:
            targets = targets.filter(parent__slug=query["parent"])
        if query.get("search"):
            targets = targets.filter(Q(name__icontains=query["search"]) | Q(slug__icontains=query["search"]))
        return order_by_param(targets, self.request, ORDERING, "name")

    @extend_schema(parameters=[TargetFilterSerializer, ordering_parameter(ORDERING, "name")])
    def list(self, request):
        """Every target with its health: the worst state of its enabled checks."""
        page = self.paginate_queryset(self._filtered())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(parameters=[TARGET_ID], responses=_target_response("TargetResponse"))
    def retrieve(self, request, target_id: str):
        return ok(target=self.get_serializer(self.get_object()).data)

    @extend_schema(responses={201: _target_response("TargetCreatedResponse")})
    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            target = serializer.save()
            audit_request(
                request,
                source=AuditSource.API,
                action=AuditAction.CREATE,
                obj=target,
                after=snapshot(target, exclude=SKIPPED_IN_AUDIT),
            )
        return ok(status.HTTP_201_CREATED, target=self.get_serializer(self.get_queryset().get(pk=target.pk)).data)

    @extend_schema(parameters=[TARGET_ID], responses=_target_response("TargetUpdatedResponse"))
    def update(self, request, target_id: str):
        return self._change(request, partial=False)

    @extend_schema(parameters=[TARGET_ID], responses=_target_response("TargetPatchedResponse"))
    def partial_update(self, request, target_id: str):
        return self._change(request, partial=True)

    def _change(self, request, *, partial: bool):
        with transaction.atomic():
            target = MonitoringTarget.objects.select_for_update().get(pk=self.get_object().pk)
            before = snapshot(target, exclude=SKIPPED_IN_AUDIT)
            serializer = self.get_serializer(target, data=request.data, partial=partial)
            serializer.is_valid(raise_exception=True)
            target = serializer.save()
            old, new = changed_fields(before, snapshot(target, exclude=SKIPPED_IN_AUDIT))
            if new:
                action = AuditAction.UPDATE
                if set(new) == {"enabled"}:
                    action = AuditAction.ENABLE if new["enabled"] else AuditAction.DISABLE
                audit_request(request, source=AuditSource.API, action=action, obj=target, before=old, after=new)
        return ok(target=self.get_serializer(self.get_queryset().get(pk=target.pk)).data)

    @extend_schema(
        parameters=[TARGET_ID],
        responses={
            200: inline_serializer(
                "TargetDeletedResponse", {"success": serializers.BooleanField(), "deleted": serializers.IntegerField()}
            ),
            409: ErrorSerializer,
        },
    )
    def destroy(self, request, target_id: str):
        target = self.get_object()
        pk = target.pk
        try:
            with transaction.atomic():
                audit_request(
                    request,
                    source=AuditSource.API,
                    action=AuditAction.DELETE,
                    obj=target,
                    before=snapshot(target, exclude=SKIPPED_IN_AUDIT),
                )
                target.delete()
        except ProtectedError as exc:
            raise Conflict(
                f"Target {target.slug!r} is the parent of other targets; give them another parent first."
            ) from exc
        return ok(deleted=pk)
