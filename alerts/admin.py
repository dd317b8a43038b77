"""Admin of alerting: rules (where people edit them), alerts with their history and the
acknowledge/resolve actions, silences, maintenance windows and escalation policies."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from monitoring.admin_audit import AuditedModelAdmin, EnableDisableAdmin, ReadOnlyAdmin
from monitoring.audit import client_ip, snapshot
from monitoring.choices import AuditSource
from monitoring.models import Series
from monitoring.promql import PromQLError

from .choices import AlertState
from .engine import RuleSpecError, Transition
from .evaluation import default_evaluation_interval, spec_for_rule
from .lifecycle import AlertStateError, acknowledge_alert, resolve_alert, set_rule_enabled
from .models import Alert, AlertEvent, AlertRule, EscalationPolicy, EscalationStep, MaintenanceWindow, Silence
from .replay import replay_stored_history
from .silencing import SilenceError, expire_silence, parse_matchers, refresh_silenced, silence_rule, validate_schedule

SILENCE_ACTION_HOURS = 1
PREVIEW_DAYS = 7
# The periods the preview of the form as edited offers, in hours (the last is the default).
PREVIEW_PERIOD_HOURS = (6, 24, PREVIEW_DAYS * 24)
PREVIEW_TRANSITIONS_SHOWN = 50  # the latest ones; the summary counts them all
PREVIEW_CHART_WIDTH = 600


@dataclass(frozen=True)
class RulePreview:
    """How a rule would have behaved over stored history (the admin's rule preview)."""

    fired: int  # times an alert went to firing
    firing_series: int  # series that fired at least once
    matched_series: int  # series of the metric (and matchers) with samples in the period
    firing_seconds: float  # alert-seconds spent firing, summed over series
    evaluations: int
    interval_s: int
    transitions: tuple[Transition, ...] = ()  # every would-be transition, in time order
    firing_per_step: tuple[int, ...] = ()  # alerts firing after each evaluation


def preview_rule(rule: AlertRule, now: datetime, days: float = PREVIEW_DAYS) -> RulePreview:
    """Replay `rule` through the engine over the last `days` of stored samples, at its
    evaluation interval. Works on an unsaved rule too (the admin form as edited). Raises
    RuleSpecError for a rule the engine cannot evaluate and PromQLError for an expression
    that fails on the stored data."""
    start = now - timedelta(days=days)
    interval = rule.evaluation_interval or default_evaluation_interval()
    steps = replay_stored_history(spec_for_rule(rule), start=start, end=now, interval_s=interval)
    transitions = tuple(t for step in steps for t in step.transitions)
    fired = [t for t in transitions if t.to_state == AlertState.ACTIVE]
    if rule.expr:
        # Every series of an expression's result holds: the series seen are those that
        # were pending or firing at some evaluation.
        matched = {frozenset(labels.items()) for step in steps for labels in (*step.firing, *step.pending)}
    else:
        matchers = rule.matchers or {}
        stored = Series.objects.filter(name=rule.metric, last_ts__gte=int(start.timestamp() * 1000))
        matched = [
            labels
            for labels in stored.values_list("labels", flat=True)
            if all(labels.get(name, "") == value for name, value in matchers.items())
        ]
    return RulePreview(
        fired=len(fired),
        firing_series=len({t.fingerprint for t in fired}),
        matched_series=len(matched),
        firing_seconds=sum(len(step.firing) for step in steps) * interval,
        evaluations=len(steps),
        interval_s=interval,
        transitions=transitions,
        firing_per_step=tuple(len(step.firing) for step in steps),
    )


def preview_summary(rule: AlertRule, result: RulePreview, how: str) -> str:
    """The preview in one sentence; `how` says which rule was replayed ("as saved")."""
    every = f"{result.evaluations} evaluations every {result.interval_s} s, {how}"
    if not result.matched_series:
        if rule.expr:
            return f"Never: the expression returned no series in the period ({every})."
        return f"Never: no series of {rule.metric!r} matching the rule has samples in the period ({every})."
    if not result.fired:
        return f"Never, on {result.matched_series} series ({every})."
    hours = result.firing_seconds / 3600
    return (
        f"{result.fired} time(s), on {result.firing_series} of {result.matched_series} series, "
        f"firing {hours:.1f} alert-hours in all ({every})."
    )


def firing_chart(counts: Sequence[int], width: int = PREVIEW_CHART_WIDTH, height: int = 40) -> dict[str, Any]:
    """An SVG polyline of the alerts firing over the period, at most one point per pixel
    (the most firing at any evaluation of each column)."""
    if not counts:
        return {}
    columns = min(width, len(counts))
    per = len(counts) / columns
    peaks = [max(counts[int(i * per) : max(int((i + 1) * per), int(i * per) + 1)]) for i in range(columns)]
    top = max(peaks) or 1
    step = width / max(columns - 1, 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (peak / top) * (height - 4):.1f}" for i, peak in enumerate(peaks))
    return {"points": points, "width": width, "height": height, "peak": max(peaks)}


def _period_text(hours: int) -> str:
    return f"{hours // 24} days" if hours % 24 == 0 and hours > 24 else f"{hours} hours"


def label_text(labels: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _service_kwargs(request: HttpRequest) -> dict[str, Any]:
    """What every lifecycle service wants to know about a person acting in the admin."""
    return {"user": request.user, "source": AuditSource.ADMIN, "now": timezone.now(), "ip": client_ip(request)}


RULE_CONDITION_FIELDS = [
    "metric",
    "matchers",
    "comparison",
    "threshold",
    "duration",
    "severity",
    "labels",
    "resolve_after",
    "evaluation_interval",
]


class AlertRuleForm(forms.ModelForm):
    class Meta:
        model = AlertRule
        fields = [
            "name",
            "key",
            "description",
            "enabled",
            *RULE_CONDITION_FIELDS,
            "expr",
            "channels",
            "escalation_policy",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "metric" in self.fields:
            # A rule with a PromQL `expr` reads the metrics its expression names (clean()
            # requires a metric of the others).
            self.fields["metric"].required = False

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "metric" in self.fields and not data.get("metric") and not (data.get("expr") or "").strip():
            self.add_error("metric", "Give a metric, or a PromQL expression in `expr`.")
        # The fields refuse an unknown comparison and a negative duration; the engine's own
        # checks then make the admin accept exactly the rules the engine can evaluate.
        if not self.errors:
            try:
                spec_for_rule(AlertRule(**{name: data.get(name) for name in RULE_CONDITION_FIELDS}))
            except RuleSpecError as exc:
                raise forms.ValidationError(f"The engine cannot evaluate this rule: {exc}.") from exc
        return data


@admin.register(AlertRule)
class AlertRuleAdmin(AuditedModelAdmin):
    form = AlertRuleForm

    class Media:
        js = ["vendor/htmx/htmx.min.js", "alerts/rule_preview.js"]

    list_display = [
        "name",
        "key",
        "metric",
        "condition",
        "duration",
        "severity",
        "enabled",
        "escalation_policy",
        "last_evaluated_at",
    ]
    list_filter = ["enabled", "severity", "comparison", "escalation_policy"]
    search_fields = ["name", "key", "metric", "description"]
    ordering = ["name"]
    prepopulated_fields = {"key": ["name"]}
    autocomplete_fields = ["escalation_policy", "channels"]
    list_select_related = ["escalation_policy"]
    readonly_fields = ["last_evaluated_at", "created_at", "updated_at", "preview"]
    fieldsets = [
        (None, {"fields": ["name", "key", "description", "enabled"]}),
        (f"Preview: the last {PREVIEW_DAYS} days of stored data", {"fields": ["preview"]}),
        (
            "Condition",
            {"fields": ["metric", "matchers", "comparison", "threshold", "duration", "resolve_after", "expr"]},
        ),
        ("Alerts", {"fields": ["severity", "labels", "channels", "escalation_policy", "evaluation_interval"]}),
        ("History", {"fields": ["last_evaluated_at", "created_at", "updated_at"], "classes": ["collapse"]}),
    ]
    actions = ["enable_selected", "disable_selected", "silence_selected"]

    @admin.display(description="condition")
    def condition(self, obj: AlertRule) -> str:
        if obj.expr.strip():
            return obj.expr
        return f"{obj.metric} {obj.comparison} {obj.threshold:g}"

    @admin.display(description="would have fired")
    def preview(self, obj: AlertRule | None) -> str:
        if obj is None or obj.pk is None:
            saved = "Replay the form as edited to see how often the rule would have fired over stored data."
            url = reverse("admin:alerts_alertrule_preview_new")
        else:
            try:
                saved = preview_summary(obj, preview_rule(obj, timezone.now()), "as saved")
            except (RuleSpecError, PromQLError) as exc:
                saved = f"No preview: {exc}."
            url = reverse("admin:alerts_alertrule_preview", args=[obj.pk])
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            ((h, " selected" if h == PREVIEW_PERIOD_HOURS[-1] else "", _period_text(h)) for h in PREVIEW_PERIOD_HOURS),
        )
        # htmx posts the whole change form (it is the button's form) without saving it.
        return format_html(
            '<p>{}</p><p class="rule-preview-controls"><button type="button" class="button" hx-post="{}" '
            'hx-target="#rule-preview" hx-swap="innerHTML" hx-indicator="#rule-preview">Preview the form as '
            'edited</button> over the last <select name="preview_hours" aria-label="Preview period">{}</select>'
            '</p><div id="rule-preview" aria-live="polite"></div>',
            saved,
            url,
            options,
        )

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.preview_view)
        return [
            path("preview/", view, name="alerts_alertrule_preview_new"),
            path("<path:object_id>/preview/", view, name="alerts_alertrule_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, object_id: str | None = None) -> HttpResponse:
        """Replay the posted rule form, as edited and unsaved, over stored history: the
        form's own validation decides what may be replayed (its errors are the answer,
        400), and nothing is written. Needs the permission the form itself needs: change
        for a stored rule, add for a new one."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = None
        if object_id is not None:
            obj = self.get_object(request, unquote(object_id))
            if obj is None:
                return self._preview_response(request, errors=[f"There is no alert rule {object_id}."], status=404)
            if not self.has_change_permission(request, obj):
                raise PermissionDenied
        elif not self.has_add_permission(request):
            raise PermissionDenied
        try:
            hours = int(request.POST.get("preview_hours", PREVIEW_PERIOD_HOURS[-1]))
        except ValueError:
            hours = 0
        if hours not in PREVIEW_PERIOD_HOURS:
            choices = ", ".join(str(h) for h in PREVIEW_PERIOD_HOURS)
            return self._preview_response(request, errors=[f"preview_hours: choose one of {choices}."], status=400)
        form = self.get_form(request, obj, change=obj is not None)(request.POST, request.FILES, instance=obj)
        if not form.is_valid():
            errors = [
                f"{form.fields[name].label if name in form.fields else 'Rule'}: {message}"
                for name, messages_ in form.errors.items()
                for message in messages_
            ]
            return self._preview_response(request, errors=errors, status=400)
        rule = form.instance  # the posted values, in memory only: the row is not touched
        try:
            result = preview_rule(rule, timezone.now(), days=hours / 24)
        except (RuleSpecError, PromQLError) as exc:
            return self._preview_response(request, errors=[f"No preview: {exc}."], status=200)
        shown = result.transitions[-PREVIEW_TRANSITIONS_SHOWN:]
        return self._preview_response(
            request,
            summary=preview_summary(rule, result, f"as edited, over the last {_period_text(hours)}"),
            transitions=[
                {
                    "at": t.at,
                    "labels": label_text(dict(t.labels)),
                    "change": f"{t.from_state or 'new'} → {t.to_state}",
                    "value": t.value,
                }
                for t in reversed(shown)
            ],
            hidden=len(result.transitions) - len(shown),
            chart=firing_chart(result.firing_per_step),
        )

    def _preview_response(self, request: HttpRequest, status: int = 200, **context: Any) -> HttpResponse:
        return TemplateResponse(request, "alerts/rule_preview.html", context, status=status)

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> AlertRule:
        rule = super().save_form(request, form, change)
        if rule.metric and not Series.objects.filter(name=rule.metric).exists():
            self.message_user(
                request,
                f"No series of metric {rule.metric!r} has been stored yet: the rule is saved but matches "
                "nothing until one is. Check the name if that is unexpected.",
                messages.WARNING,
            )
        return rule

    def save_model(self, request: HttpRequest, obj: AlertRule, form: Any, change: bool) -> None:
        stored_enabled = (
            AlertRule.objects.filter(pk=obj.pk).values_list("enabled", flat=True).first() if change else None
        )
        wanted = obj.enabled
        if change and stored_enabled is not None and stored_enabled != wanted:
            # Through the lifecycle service, so disabling closes the rule's open alerts
            # just as the action and the API do.
            obj.enabled = stored_enabled
            super().save_model(request, obj, form, change)
            set_rule_enabled(rule_id=obj.pk, enabled=wanted, **_service_kwargs(request))
            obj.enabled = wanted
            return
        super().save_model(request, obj, form, change)

    def _set_enabled(self, request: HttpRequest, queryset: models.QuerySet, enabled: bool) -> int:
        changed = 0
        for rule_id in queryset.filter(enabled=not enabled).values_list("pk", flat=True):
            set_rule_enabled(rule_id=rule_id, enabled=enabled, **_service_kwargs(request))
            changed += 1
        return changed

    @admin.action(description="Enable selected alert rules", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        count = self._set_enabled(request, queryset, True)
        self.message_user(request, f"Enabled {count} rule(s).", messages.SUCCESS)

    @admin.action(description="Disable selected alert rules (closes their open alerts)", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        count = self._set_enabled(request, queryset, False)
        self.message_user(request, f"Disabled {count} rule(s).", messages.SUCCESS)

    @admin.action(description=f"Silence selected alert rules for {SILENCE_ACTION_HOURS} hour", permissions=["silence"])
    def silence_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        for rule_id in queryset.values_list("pk", flat=True):
            silence_rule(rule_id=rule_id, duration_hours=SILENCE_ACTION_HOURS, **_service_kwargs(request))
        self.message_user(
            request, f"Silenced {queryset.count()} rule(s) for {SILENCE_ACTION_HOURS} hour.", messages.SUCCESS
        )

    def has_silence_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("alerts.add_silence")


class AlertEventInline(admin.TabularInline):
    model = AlertEvent
    fields = ["at", "from_state", "to_state", "actor_name", "value", "note"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["at", "id"]

    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    """Alerts are made by the engine and moved by people through the actions (acknowledge,
    resolve), which go through alerts.lifecycle like the API and the CLI."""

    list_display = [
        "id",
        "rule",
        "label_summary",
        "severity",
        "state",
        "value",
        "silenced",
        "fired_at",
        "acknowledged_by",
        "resolved_at",
        "created_at",
    ]
    list_display_links = ["id", "rule"]
    list_filter = ["state", "severity", "silenced", "rule", "created_at"]
    search_fields = ["rule__name", "rule__key", "=fingerprint", "message"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    list_select_related = ["rule", "acknowledged_by"]
    show_full_result_count = False
    inlines = [AlertEventInline]
    actions = ["acknowledge_selected", "resolve_selected"]

    @admin.display(description="labels")
    def label_summary(self, obj: Alert) -> str:
        return label_text(obj.labels)

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("alerts.acknowledge_alert")

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("alerts.resolve_alert")

    def _apply(self, request: HttpRequest, queryset: models.QuerySet, service: Any, verb: str) -> None:
        done, refused = 0, []
        for alert_id in queryset.values_list("pk", flat=True):
            try:
                service(alert_id=alert_id, **_service_kwargs(request))
                done += 1
            except (AlertStateError, Alert.DoesNotExist) as exc:
                refused.append(str(exc))
        if done:
            self.message_user(request, f"{verb.capitalize()} {done} alert(s).", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, f"Not {verb}: {reason}.", messages.WARNING)

    @admin.action(description="Acknowledge selected alerts", permissions=["acknowledge"])
    def acknowledge_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        self._apply(request, queryset, acknowledge_alert, "acknowledged")

    @admin.action(description="Resolve selected alerts", permissions=["resolve"])
    def resolve_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        self._apply(request, queryset, resolve_alert, "resolved")


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "alert", "from_state", "to_state", "actor_name", "value"]
    list_filter = ["to_state", "from_state", "at"]
    search_fields = ["alert__rule__name", "actor_name", "note"]
    date_hierarchy = "at"
    ordering = ["-at", "-id"]
    list_select_related = ["alert__rule"]
    show_full_result_count = False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False  # history goes with its alert, never alone


class MatchersFormMixin:
    def clean_matchers(self) -> Any:
        matchers = self.cleaned_data.get("matchers")
        try:
            parse_matchers(matchers)
        except SilenceError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return matchers or []


class SilenceForm(MatchersFormMixin, forms.ModelForm):
    class Meta:
        model = Silence
        fields = ["rule", "matchers", "starts_at", "ends_at", "comment"]


class SilenceStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("active", "Active"), ("pending", "Not started"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: models.QuerySet) -> models.QuerySet:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(starts_at__lte=now, ends_at__gt=now)
        if self.value() == "pending":
            return queryset.filter(starts_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(ends_at__lte=now)
        return queryset


class RefreshSilencedMixin:
    """After silences or windows change, mark the open alerts they cover at once instead
    of at the next evaluation."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        transaction.on_commit(lambda: refresh_silenced(timezone.now()))

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        super().delete_model(request, obj)
        transaction.on_commit(lambda: refresh_silenced(timezone.now()))

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        super().delete_queryset(request, queryset)
        transaction.on_commit(lambda: refresh_silenced(timezone.now()))


@admin.register(Silence)
class SilenceAdmin(RefreshSilencedMixin, AuditedModelAdmin):
    form = SilenceForm
    list_display = ["id", "rule", "matcher_text", "starts_at", "ends_at", "status", "created_by", "comment"]
    list_display_links = ["id", "rule"]
    list_filter = [SilenceStatusFilter, "starts_at"]
    search_fields = ["comment", "rule__name", "rule__key"]
    date_hierarchy = "starts_at"
    ordering = ["-starts_at"]
    autocomplete_fields = ["rule"]
    list_select_related = ["rule", "created_by"]
    readonly_fields = ["created_by", "created_at"]
    actions = ["end_selected"]

    @admin.display(description="matchers")
    def matcher_text(self, obj: Silence) -> str:
        return ", ".join(f"{m.get('name')}{m.get('op', '=')}{m.get('value')}" for m in obj.matchers) or "-"

    @admin.display(description="status")
    def status(self, obj: Silence) -> str:
        now = timezone.now()
        if now < obj.starts_at:
            return "not started"
        return "active" if now < obj.ends_at else "expired"

    def save_model(self, request: HttpRequest, obj: Silence, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="End selected silences now", permissions=["change"])
    def end_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        ended = 0
        for silence_id in queryset.filter(ends_at__gt=timezone.now()).values_list("pk", flat=True):
            expire_silence(silence_id=silence_id, **_service_kwargs(request))
            ended += 1
        self.message_user(request, f"Ended {ended} silence(s).", messages.SUCCESS)


class MaintenanceWindowForm(MatchersFormMixin, forms.ModelForm):
    class Meta:
        model = MaintenanceWindow
        fields = [
            "name",
            "enabled",
            "schedule_kind",
            "weekdays",
            "start_time",
            "cron",
            "duration_minutes",
            "time_zone",
            "targets",
            "matchers",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        try:
            validate_schedule(
                kind=data.get("schedule_kind", ""),
                weekdays=data.get("weekdays"),
                start_time=data.get("start_time"),
                cron=data.get("cron", ""),
                time_zone=data.get("time_zone", ""),
                duration_minutes=data.get("duration_minutes") or 0,
            )
        except SilenceError as exc:
            field = exc.field if exc.field in self.fields else None
            self.add_error(field, str(exc))
        return data


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(RefreshSilencedMixin, EnableDisableAdmin):
    form = MaintenanceWindowForm
    list_display = ["name", "schedule_kind", "schedule", "duration_minutes", "time_zone", "enabled"]
    list_filter = ["enabled", "schedule_kind"]
    search_fields = ["name"]
    ordering = ["name"]
    autocomplete_fields = ["targets"]
    readonly_fields = ["created_at"]

    @admin.display(description="schedule")
    def schedule(self, obj: MaintenanceWindow) -> str:
        if obj.cron:
            return obj.cron
        days = ",".join(str(d) for d in obj.weekdays)
        return f"days {days} at {obj.start_time:%H:%M}" if obj.start_time else f"days {days}"


class EscalationStepInline(admin.TabularInline):
    model = EscalationStep
    fields = ["order", "after_minutes", "channels"]
    autocomplete_fields = ["channels"]
    ordering = ["order"]
    extra = 1


@admin.register(EscalationPolicy)
class EscalationPolicyAdmin(EnableDisableAdmin):
    list_display = ["name", "key", "severity", "step_count", "repeat", "enabled", "updated_at"]
    list_filter = ["enabled", "severity", "repeat"]
    search_fields = ["name", "key"]
    ordering = ["name"]
    prepopulated_fields = {"key": ["name"]}
    readonly_fields = ["created_at", "updated_at"]
    inlines = [EscalationStepInline]

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).annotate(step_total=Count("steps"))

    @admin.display(description="steps", ordering="step_total")
    def step_count(self, obj: EscalationPolicy) -> int:
        return obj.step_total

    def audit_snapshot(self, obj: EscalationPolicy) -> dict[str, Any]:
        # The steps are part of the policy as people see it: audit them with it.
        data = super().audit_snapshot(obj)
        steps = obj.steps.order_by("order") if obj.pk else []
        data["steps"] = [snapshot(step, exclude=("id", "policy")) for step in steps]
        return data
