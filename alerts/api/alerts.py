"""`/api/alerts`: the alert list and detail, and the acknowledge and resolve actions."""

from datetime import timedelta

from django.db.models import Case, F, IntegerField, Prefetch, Q, QuerySet, Value, When
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.decorators import action

from monitoring.api_frame import Conflict, ok
from monitoring.permissions import ReadViewerWriteAdmin

from ..choices import OPEN_STATES, Severity
from ..lifecycle import STATUS_FILTERS, AlertStateError, acknowledge_alert, filter_by_status, resolve_alert
from ..models import Alert, AlertEvent
from .common import (
    READ_ERRORS,
    WRITE_ERRORS,
    AlertPagination,
    ErrorSerializer,
    audit_context,
    bad_input,
)

MAX_QUERY_HOURS = 24 * 366


class AlertSerializer(serializers.ModelSerializer):
    """One alert, as `GET /api/alerts` lists it."""

    status = serializers.CharField(source="state")
    rule_id = serializers.IntegerField()
    rule_name = serializers.CharField(source="rule.name")
    rule_key = serializers.CharField(source="rule.key")
    metric = serializers.CharField(source="rule.metric")
    comparison = serializers.CharField(source="rule.comparison")
    threshold = serializers.FloatField(source="rule.threshold")
    current_value = serializers.FloatField(source="value", allow_null=True)
    target = serializers.SerializerMethodField()
    triggered_at = serializers.DateTimeField(source="fired_at", allow_null=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    resolved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    suppressed_by = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule_id",
            "rule_name",
            "rule_key",
            "metric",
            "comparison",
            "threshold",
            "labels",
            "severity",
            "status",
            "current_value",
            "message",
            "target",
            "pending_since",
            "triggered_at",
            "acknowledged_at",
            "acknowledged_by",
            "acknowledged_note",
            "acknowledgement_expires_at",
            "resolved_at",
            "resolved_by",
            "silenced",
            "suppressed_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_target(self, alert: Alert) -> str | None:
        return alert.target.slug if alert.target_id else alert.labels.get("target")


class AlertEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name")

    class Meta:
        model = AlertEvent
        fields = ["id", "from_state", "to_state", "at", "actor", "value", "note"]
        read_only_fields = fields


class AlertDetailSerializer(AlertSerializer):
    events = AlertEventSerializer(many=True, read_only=True)

    class Meta(AlertSerializer.Meta):
        fields = [*AlertSerializer.Meta.fields, "events"]
        read_only_fields = fields


class AlertFilterSerializer(serializers.Serializer):
    """The query parameters of `GET /api/alerts`."""

    status = serializers.CharField(
        required=False, help_text=f"Comma-separated, any of: {', '.join(STATUS_FILTERS)}. E.g. `?status=active`."
    )
    severity = serializers.CharField(required=False, help_text="Comma-separated severities, e.g. `high,critical`.")
    rule = serializers.CharField(required=False, help_text="A rule's id or key.")
    target = serializers.CharField(required=False, help_text="A target's slug (the alert's target or `target` label).")
    since = serializers.DateTimeField(required=False, help_text="Alerts still open at or after this time.")
    until = serializers.DateTimeField(required=False, help_text="Alerts that started at or before this time.")
    hours = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_QUERY_HOURS, help_text="Shorthand for `since` = now - hours."
    )
    ordering = serializers.ChoiceField(
        required=False,
        choices=["created_at", "-created_at", "triggered_at", "-triggered_at", "severity", "-severity"],
        help_text="Default `-created_at` (newest first).",
    )

    def validate_status(self, value: str) -> list[str]:
        statuses = [s.strip() for s in value.split(",") if s.strip()]
        unknown = [s for s in statuses if s not in STATUS_FILTERS]
        if unknown or not statuses:
            raise serializers.ValidationError(
                f"Unknown status {', '.join(unknown) or value!r}; use one of {', '.join(STATUS_FILTERS)}."
            )
        return statuses

    def validate_severity(self, value: str) -> list[str]:
        severities = [s.strip() for s in value.split(",") if s.strip()]
        if not severities or any(s not in Severity.values for s in severities):
            raise serializers.ValidationError(f"Unknown severity in {value!r}; use {', '.join(Severity.values)}.")
        return severities


SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class AlertActionSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class AcknowledgeSerializer(AlertActionSerializer):
    acknowledged_by = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=150,
        help_text="The person's name, recorded on the event; the API key's user is the audited actor.",
    )
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="The alert returns to firing then unless resolved first."
    )


class ResolveSerializer(AlertActionSerializer):
    resolved_by = serializers.CharField(required=False, allow_blank=True, max_length=150)


def alerts_for_listing() -> QuerySet:
    """Alerts with what AlertSerializer shows, in one query."""
    return Alert.objects.select_related("rule", "target", "acknowledged_by", "resolved_by")


def filter_alerts(alerts: QuerySet, query: dict) -> QuerySet:
    """Apply the validated filters of AlertFilterSerializer (shared by the API and the CLI)."""
    if "status" in query:
        alerts = filter_by_status(alerts, query["status"])
    if "severity" in query:
        alerts = alerts.filter(severity__in=query["severity"])
    if "rule" in query:
        rule = query["rule"]
        by_rule = Q(rule__key=rule)
        if rule.isascii() and rule.isdigit() and len(rule) < 19:  # an id, not a key
            by_rule |= Q(rule_id=int(rule))
        alerts = alerts.filter(by_rule)
    if "target" in query:
        alerts = alerts.filter(Q(target__slug=query["target"]) | Q(labels__target=query["target"]))
    since = query.get("since")
    if "hours" in query:
        recent = timezone.now() - timedelta(hours=query["hours"])
        since = max(since, recent) if since else recent
    if since is not None:
        # Overlap with the range: still open, or ended (resolved or dropped) after it began.
        alerts = alerts.filter(
            Q(state__in=OPEN_STATES) | Q(resolved_at__gte=since) | Q(resolved_at__isnull=True, updated_at__gte=since)
        )
    if "until" in query:
        alerts = alerts.filter(pending_since__lte=query["until"])
    ordering = query.get("ordering", "-created_at")
    descending = "-" if ordering.startswith("-") else ""
    field = ordering.lstrip("-")
    if field == "severity":
        # Severity by rank (critical above low), not alphabetically.
        rank = Case(*(When(severity=s, then=Value(r)) for s, r in SEVERITY_RANK.items()), output_field=IntegerField())
        return alerts.alias(severity_rank=rank).order_by(f"{descending}severity_rank", "-created_at", "-id")
    field = "fired_at" if field == "triggered_at" else field
    # Alerts that never fired sort last either way, on SQLite and PostgreSQL alike.
    order = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
    return alerts.order_by(order, f"{descending}id")


def _alert_response(name: str) -> serializers.Serializer:
    return inline_serializer(
        name,
        {"success": serializers.BooleanField(), "message": serializers.CharField(), "alert": AlertSerializer()},
    )


class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Alerts: viewers read; operators acknowledge and resolve."""

    permission_classes = [ReadViewerWriteAdmin]
    operator_actions = ("acknowledge", "resolve")
    serializer_class = AlertSerializer
    pagination_class = AlertPagination
    sparse_fields = True
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        alerts = alerts_for_listing()
        if self.action == "retrieve":
            return alerts.prefetch_related(Prefetch("events", queryset=AlertEvent.objects.order_by("at", "id")))
        if self.action != "list":
            return alerts
        params = AlertFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return filter_alerts(alerts, params.validated_data)

    @extend_schema(parameters=[AlertFilterSerializer], responses={200: AlertSerializer(many=True), **READ_ERRORS})
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        responses={
            200: inline_serializer(
                "AlertDetailResponse", {"success": serializers.BooleanField(), "alert": AlertDetailSerializer()}
            ),
            **READ_ERRORS,
        }
    )
    def retrieve(self, request, *args, **kwargs):
        return ok(alert=AlertDetailSerializer(self.get_object()).data)

    def _act(self, request, pk, serializer_class, service, verb: str, name_field: str):
        body = serializer_class(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        extra = {"expires_at": data["expires_at"]} if data.get("expires_at") else {}
        try:
            service(
                alert_id=int(pk),
                user=request.user,
                note=data.get("note", ""),
                actor_name=data.get(name_field, ""),
                now=timezone.now(),
                **extra,
                **audit_context(request),
            )
        except Alert.DoesNotExist as exc:
            raise exceptions.NotFound(f"There is no alert {pk}.") from exc
        except AlertStateError as exc:
            raise Conflict(str(exc)) from exc
        except ValueError as exc:
            raise bad_input(exc, "expires_at") from exc
        alert = self.get_queryset().get(pk=pk)
        return ok(message=f"Alert {pk} {verb}", alert=AlertSerializer(alert).data)

    @extend_schema(
        request=AcknowledgeSerializer,
        responses={200: _alert_response("AcknowledgeResponse"), 409: ErrorSerializer, **WRITE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """Acknowledge a firing alert (operator). 409 when the alert is not `active`."""
        return self._act(request, pk, AcknowledgeSerializer, acknowledge_alert, "acknowledged", "acknowledged_by")

    @extend_schema(
        request=ResolveSerializer,
        responses={200: _alert_response("ResolveResponse"), 409: ErrorSerializer, **WRITE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        """Resolve a firing alert by hand (operator). 409 when the alert is not firing."""
        return self._act(request, pk, ResolveSerializer, resolve_alert, "resolved", "resolved_by")
