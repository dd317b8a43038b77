"""`/api/alert-rules`: rule configuration, and the silence, enable and disable actions."""

import math
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import Prefetch, ProtectedError
from django.utils import timezone
from django.utils.text import slugify
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action

from monitoring.api_frame import Conflict, ok
from monitoring.api_pagination import order_by_param, ordering_parameter
from monitoring.audit import record_audit
from monitoring.choices import AuditAction
from monitoring.models import Series
from monitoring.permissions import ReadViewerWriteAdmin
from monitoring.promql import validate_expr
from notifications.models import NotificationChannel

from ..choices import Comparison, Severity
from ..lifecycle import set_rule_enabled as set_rule_enabled_service
from ..models import AlertRule, EscalationPolicy, Silence
from ..silencing import MAX_SILENCE_HOURS, SilenceError, silence_rule
from .common import (
    READ_ERRORS,
    WRITE_ERRORS,
    ErrorSerializer,
    RulePagination,
    audit_context,
    bad_input,
)
from .silences import SilenceSerializer


def _string_map(value: object, what: str) -> dict:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise serializers.ValidationError(
            f'{what} must be an object of label names to strings, e.g. {{"env": "prod"}}.'
        )
    return value


class AlertRuleSerializer(serializers.ModelSerializer):
    """An alert rule, read and written. Channels and the escalation policy by key."""

    key = serializers.SlugField(max_length=100, required=False, help_text="Defaults to the name, slugified.")
    metric = serializers.CharField(
        max_length=200, allow_blank=True, help_text="Metric name; may be left out or empty for a rule with `expr`."
    )
    comparison = serializers.ChoiceField(choices=Comparison.choices)
    severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.MEDIUM)
    threshold = serializers.FloatField()
    duration = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    resolve_after = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False, allow_null=True)
    evaluation_interval = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False, allow_null=True)
    matchers = serializers.JSONField(required=False, help_text='Exact label matches, e.g. {"env": "prod"}.')
    labels = serializers.JSONField(required=False, help_text="Extra labels added to every alert.")
    expr = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=10_000,
        trim_whitespace=False,
        help_text="A PromQL expression evaluated instead of metric/comparison/threshold; each series of "
        "its result is one alert (empty: a metric rule).",
    )
    channels = serializers.SlugRelatedField(
        slug_field="key", many=True, required=False, queryset=NotificationChannel.objects.all()
    )
    escalation_policy = serializers.SlugRelatedField(
        slug_field="key", required=False, allow_null=True, queryset=EscalationPolicy.objects.all()
    )
    silenced_until = serializers.SerializerMethodField()

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "key",
            "name",
            "description",
            "metric",
            "matchers",
            "comparison",
            "threshold",
            "duration",
            "severity",
            "channels",
            "escalation_policy",
            "resolve_after",
            "evaluation_interval",
            "labels",
            "expr",
            "enabled",
            "silenced_until",
            "last_evaluated_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "silenced_until", "last_evaluated_at", "created_at", "updated_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        expr = kwargs["data"].get("expr") if isinstance(kwargs.get("data"), Mapping) else None
        if isinstance(expr, str) and expr.strip():
            self.fields["metric"].required = False  # a PromQL rule reads what its expression names

    def get_silenced_until(self, rule: AlertRule) -> str | None:
        active = getattr(rule, "active_silences", None)
        if active is None:
            now = timezone.now()
            active = [s for s in rule.silences.all() if s.starts_at <= now < s.ends_at]
        ends = max((s.ends_at for s in active), default=None)
        return serializers.DateTimeField().to_representation(ends) if ends else None

    def validate_threshold(self, value: float) -> float:
        if not math.isfinite(value):
            raise serializers.ValidationError("The threshold must be a finite number.")
        return value

    def validate_matchers(self, value: object) -> dict:
        return _string_map(value, "Matchers")

    def validate_labels(self, value: object) -> dict:
        return _string_map(value, "Labels")

    def validate_expr(self, value: str) -> str:
        problem = validate_expr(value) if value.strip() else None
        if problem:
            raise serializers.ValidationError(f"Not a usable alert expression: {problem}.")
        return value

    def validate(self, attrs: dict) -> dict:
        if self.instance is None and not attrs.get("key"):
            attrs["key"] = slugify(attrs.get("name", ""))[:100]
            if not attrs["key"]:
                raise serializers.ValidationError({"key": ["Give a key: the name has no letters to make one from."]})
        key = attrs.get("key")
        if key and AlertRule.objects.filter(key=key).exclude(pk=getattr(self.instance, "pk", None)).exists():
            raise serializers.ValidationError({"key": [f"A rule with key {key!r} exists already."]})
        metric = attrs.get("metric", getattr(self.instance, "metric", ""))
        if not metric and not attrs.get("expr", getattr(self.instance, "expr", "")).strip():
            raise serializers.ValidationError({"metric": ["Give a metric, or a PromQL expression in `expr`."]})
        return attrs


RULE_ORDERING = ("name", "key", "metric", "created_at", "updated_at")


class RuleFilterSerializer(serializers.Serializer):
    """The query parameters of `GET /api/alert-rules`."""

    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    metric = serializers.CharField(required=False, max_length=200, help_text="Exact metric name.")


def rules_for_listing(now):
    """Rules with what AlertRuleSerializer shows, in a constant number of queries."""
    return (
        AlertRule.objects.select_related("escalation_policy")
        .prefetch_related(
            "channels",
            Prefetch(
                "silences",
                queryset=Silence.objects.filter(starts_at__lte=now, ends_at__gt=now),
                to_attr="active_silences",
            ),
        )
        .order_by("name", "id")
    )


def _rule_response(name: str) -> serializers.Serializer:
    return inline_serializer(
        name,
        {
            "success": serializers.BooleanField(),
            "rule": AlertRuleSerializer(),
            "warnings": serializers.ListField(child=serializers.CharField(), required=False),
        },
    )


class SilenceRuleSerializer(serializers.Serializer):
    duration_hours = serializers.FloatField(min_value=0.0, max_value=float(MAX_SILENCE_HOURS))
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")

    def validate_duration_hours(self, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise serializers.ValidationError("The duration must be more than 0 hours.")
        return value


class AlertRuleViewSet(viewsets.ModelViewSet):
    """Alert rules: viewers read; admins configure (create, change, delete, enable,
    disable); operators silence."""

    permission_classes = [ReadViewerWriteAdmin]
    operator_actions = ("silence",)
    serializer_class = AlertRuleSerializer
    pagination_class = RulePagination
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        rules = rules_for_listing(timezone.now())
        if self.action != "list":
            return rules
        params = RuleFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        query = params.validated_data
        if query.get("enabled") is not None:
            rules = rules.filter(enabled=query["enabled"])
        if "severity" in query:
            rules = rules.filter(severity=query["severity"])
        if "metric" in query:
            rules = rules.filter(metric=query["metric"])
        return order_by_param(rules, self.request, RULE_ORDERING, "name")

    @staticmethod
    def _warnings(rule: AlertRule) -> list[str]:
        if rule.expr.strip() or Series.objects.filter(name=rule.metric).exists():
            return []
        return [f"No series of metric {rule.metric!r} has been stored yet; the rule matches nothing until one is."]

    def _respond(self, rule: AlertRule, http_status: int = status.HTTP_200_OK, **extra):
        rule = self.get_queryset().get(pk=rule.pk)
        return ok(http_status, rule=AlertRuleSerializer(rule).data, **extra)

    @extend_schema(
        parameters=[RuleFilterSerializer, ordering_parameter(RULE_ORDERING, "name")],
        responses={200: AlertRuleSerializer(many=True), **READ_ERRORS},
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: _rule_response("AlertRuleResponse"), **READ_ERRORS})
    def retrieve(self, request, *args, **kwargs):
        return ok(rule=self.get_serializer(self.get_object()).data)

    @extend_schema(responses={201: _rule_response("AlertRuleCreatedResponse"), **WRITE_ERRORS})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            rule = serializer.save()
            record_audit(
                actor=request.user, action=AuditAction.CREATE, obj=rule, after=serializer.data, **audit_context(request)
            )
        return self._respond(rule, status.HTTP_201_CREATED, warnings=self._warnings(rule))

    @extend_schema(responses={200: _rule_response("AlertRuleUpdatedResponse"), **WRITE_ERRORS})
    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        rule = self.get_object()
        before = self.get_serializer(rule).data
        serializer = self.get_serializer(rule, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            rule = serializer.save()
            record_audit(
                actor=request.user,
                action=AuditAction.UPDATE,
                obj=rule,
                before=before,
                after=serializer.data,
                **audit_context(request),
            )
        return self._respond(rule, warnings=self._warnings(rule))

    @extend_schema(responses={200: _rule_response("AlertRulePatchedResponse"), **WRITE_ERRORS})
    def partial_update(self, request, *args, **kwargs):
        return super().partial_update(request, *args, **kwargs)

    @extend_schema(
        responses={
            200: inline_serializer(
                "AlertRuleDeletedResponse", {"success": serializers.BooleanField(), "message": serializers.CharField()}
            ),
            409: ErrorSerializer,
            **READ_ERRORS,
        }
    )
    def destroy(self, request, *args, **kwargs):
        rule = self.get_object()
        before = self.get_serializer(rule).data
        pk = rule.pk
        try:
            with transaction.atomic():
                rule.delete()
                record_audit(
                    actor=request.user,
                    action=AuditAction.DELETE,
                    object_type="alerts.alertrule",
                    object_id=str(pk),
                    object_repr=str(before["name"]),
                    before=before,
                    **audit_context(request),
                )
        except ProtectedError as exc:
            raise Conflict(
                f"Rule {pk} has alerts, whose history would be lost; disable the rule instead of deleting it."
            ) from exc
        return ok(message=f"Rule {pk} deleted")

    @extend_schema(
        request=SilenceRuleSerializer,
        responses={
            201: inline_serializer(
                "RuleSilencedResponse",
                {
                    "success": serializers.BooleanField(),
                    "message": serializers.CharField(),
                    "silence": SilenceSerializer(),
                },
            ),
            **WRITE_ERRORS,
        },
    )
    @action(detail=True, methods=["post"])
    def silence(self, request, pk=None):
        """Silence every alert of this rule for `duration_hours` (operator)."""
        body = SilenceRuleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            created = silence_rule(
                rule_id=int(pk),
                duration_hours=body.validated_data["duration_hours"],
                comment=body.validated_data["comment"],
                user=request.user,
                now=timezone.now(),
                **audit_context(request),
            )
        except AlertRule.DoesNotExist as exc:
            raise exceptions.NotFound(f"There is no alert rule {pk}.") from exc
        except SilenceError as exc:
            raise bad_input(exc) from exc
        hours = body.validated_data["duration_hours"]
        return ok(
            status.HTTP_201_CREATED,
            message=f"Rule {pk} silenced for {hours:g} hours",
            silence=SilenceSerializer(created, context={"now": timezone.now()}).data,
        )

    def _switch(self, request, pk, enabled: bool):
        try:
            rule = set_rule_enabled_service(
                rule_id=int(pk), enabled=enabled, user=request.user, now=timezone.now(), **audit_context(request)
            )
        except AlertRule.DoesNotExist as exc:
            raise exceptions.NotFound(f"There is no alert rule {pk}.") from exc
        return self._respond(rule, message=f"Rule {pk} {'enabled' if enabled else 'disabled'}")

    @extend_schema(request=None, responses={200: _rule_response("RuleEnabledResponse"), **READ_ERRORS})
    @action(detail=True, methods=["post"])
    def enable(self, request, pk=None):
        """Enable the rule (admin: it is configuration)."""
        return self._switch(request, pk, True)

    @extend_schema(request=None, responses={200: _rule_response("RuleDisabledResponse"), **READ_ERRORS})
    @action(detail=True, methods=["post"])
    def disable(self, request, pk=None):
        """Disable the rule (admin). Its open alerts are closed: firing ones resolved,
        pending ones dropped."""
        return self._switch(request, pk, False)
