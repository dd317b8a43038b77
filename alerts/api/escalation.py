"""`/api/escalation-policies`: who is paged, step by step, while an alert stays
unacknowledged. Viewers read; admins configure (a write replaces the whole list of steps).
Firing alerts keep the copy of the policy they fired with, so an edit changes no running
incident."""

from django.db import transaction
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets

from monitoring.api_frame import ok
from monitoring.api_pagination import EnvelopePagination, order_by_param, ordering_parameter
from monitoring.audit import changed_fields, record_audit, snapshot
from monitoring.choices import AuditAction
from monitoring.permissions import ReadViewerWriteAdmin
from notifications.models import NotificationChannel

from ..choices import Severity
from ..models import EscalationPolicy, EscalationStep
from .common import audit_context

ORDERING = ("name", "key", "created_at")
MAX_STEPS = 50
SKIPPED_IN_AUDIT = ("updated_at",)


class EscalationStepSerializer(serializers.ModelSerializer):
    after_minutes = serializers.IntegerField(min_value=0, max_value=2**31 - 1, help_text="Minutes after firing.")
    channels = serializers.SlugRelatedField(
        slug_field="key", many=True, queryset=NotificationChannel.objects.all(), allow_empty=False
    )

    class Meta:
        model = EscalationStep
        fields = ["after_minutes", "channels"]


class EscalationPolicySerializer(serializers.ModelSerializer):
    """A policy and its steps in order of `after_minutes`."""

    key = serializers.SlugField(max_length=100)
    severity = serializers.ChoiceField(
        choices=[("", "any"), *Severity.choices],
        required=False,
        allow_blank=True,
        help_text="Applies to alerts of this severity whose rule names no policy.",
    )
    steps = EscalationStepSerializer(many=True, max_length=MAX_STEPS)

    class Meta:
        model = EscalationPolicy
        fields = ["id", "key", "name", "severity", "repeat", "enabled", "steps", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_key(self, value: str) -> str:
        others = EscalationPolicy.objects.filter(key=value).exclude(pk=getattr(self.instance, "pk", None))
        if others.exists():
            raise serializers.ValidationError(f"A policy with key {value!r} exists already.")
        return value

    def _write_steps(self, policy: EscalationPolicy, steps: list[dict]) -> None:
        policy.steps.all().delete()
        for order, step in enumerate(sorted(steps, key=lambda s: s["after_minutes"])):
            row = EscalationStep.objects.create(policy=policy, order=order, after_minutes=step["after_minutes"])
            row.channels.set(step["channels"])

    def create(self, validated_data: dict) -> EscalationPolicy:
        steps = validated_data.pop("steps")
        policy = EscalationPolicy.objects.create(**validated_data)
        self._write_steps(policy, steps)
        return policy

    def update(self, instance: EscalationPolicy, validated_data: dict) -> EscalationPolicy:
        steps = validated_data.pop("steps", None)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        instance.save()
        if steps is not None:
            self._write_steps(instance, steps)
        return instance


def policies_for_listing() -> QuerySet[EscalationPolicy]:
    """Policies with their steps and the steps' channels: three queries for any number."""
    steps = EscalationStep.objects.order_by("order").prefetch_related("channels")
    return EscalationPolicy.objects.prefetch_related(Prefetch("steps", queryset=steps))


class EscalationPolicyPagination(EnvelopePagination):
    items_key = "escalation_policies"


def _policy_response(name: str) -> serializers.Serializer:
    return inline_serializer(name, {"success": serializers.BooleanField(), "policy": EscalationPolicySerializer()})


def _audit_view(policy: EscalationPolicy) -> dict:
    view = snapshot(policy, exclude=SKIPPED_IN_AUDIT)
    view["steps"] = [
        {"after_minutes": step.after_minutes, "channels": sorted(c.key for c in step.channels.all())}
        for step in policy.steps.order_by("order")
    ]
    return view


class EscalationPolicyViewSet(viewsets.ModelViewSet):
    """Escalation policies: viewers read, admins configure."""

    permission_classes = [ReadViewerWriteAdmin]
    serializer_class = EscalationPolicySerializer
    pagination_class = EscalationPolicyPagination
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[EscalationPolicy]:
        return policies_for_listing()

    def _respond(self, policy: EscalationPolicy, http_status: int = status.HTTP_200_OK):
        return ok(http_status, policy=self.get_serializer(self.get_queryset().get(pk=policy.pk)).data)

    @extend_schema(parameters=[ordering_parameter(ORDERING, "name")])
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(order_by_param(self.get_queryset(), request, ORDERING, "name"))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(responses=_policy_response("EscalationPolicyResponse"))
    def retrieve(self, request, *args, **kwargs):
        return ok(policy=self.get_serializer(self.get_object()).data)

    @extend_schema(responses={201: _policy_response("EscalationPolicyCreatedResponse")})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            policy = serializer.save()
            record_audit(
                actor=request.user,
                action=AuditAction.CREATE,
                obj=policy,
                after=_audit_view(policy),
                **audit_context(request),
            )
        return self._respond(policy, status.HTTP_201_CREATED)

    @extend_schema(responses=_policy_response("EscalationPolicyUpdatedResponse"))
    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        with transaction.atomic():
            policy = EscalationPolicy.objects.select_for_update().get(pk=self.get_object().pk)
            before = _audit_view(policy)
            serializer = self.get_serializer(policy, data=request.data, partial=partial)
            serializer.is_valid(raise_exception=True)
            policy = serializer.save()
            old, new = changed_fields(before, _audit_view(policy))
            if new:
                record_audit(
                    actor=request.user,
                    action=AuditAction.UPDATE,
                    obj=policy,
                    before=old,
                    after=new,
                    **audit_context(request),
                )
        return self._respond(policy)

    @extend_schema(responses=_policy_response("EscalationPolicyPatchedResponse"))
    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, partial=True, **kwargs)

    @extend_schema(
        responses=inline_serializer(
            "EscalationPolicyDeletedResponse",
            {"success": serializers.BooleanField(), "deleted": serializers.IntegerField()},
        )
    )
    def destroy(self, request, *args, **kwargs):
        """Delete the policy; rules that named it fall back to the policy of their severity."""
        policy = self.get_object()
        pk = policy.pk
        with transaction.atomic():
            record_audit(
                actor=request.user,
                action=AuditAction.DELETE,
                obj=policy,
                before=_audit_view(policy),
                **audit_context(request),
            )
            policy.delete()
        return ok(deleted=pk)
