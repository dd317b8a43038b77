"""Admin of the monitoring core: global settings (a singleton), targets, series with their
latest samples, API keys (the plain key shown once) and the read-only audit log."""

import json
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .admin_audit import AuditedModelAdmin, EnableDisableAdmin
from .apikeys import create_api_key
from .choices import AuditAction, Role
from .discovery import admin as discovery_admin  # noqa: F401 - registers the discovered targets' admin
from .models import ApiKey, AuditLogEntry, GlobalSettings, MonitoringTarget, PeriodicRun, Sample, Series
from .roles import has_role

admin.site.site_header = "IoT Monitoring administration"
admin.site.site_title = "IoT Monitoring"

# Samples shown on a series' page (Sample's composite key keeps it out of the admin).
LATEST_SAMPLES = 50


def epoch_ms_to_datetime(ts: int | None) -> datetime | None:
    return datetime.fromtimestamp(ts / 1000, tz=UTC) if ts is not None else None


def pretty_json(value: Any) -> str:
    if value in (None, {}, []):
        return "-"
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


class AdminOnlyViewMixin:
    """For tables only admins may read (keys, the audit log): the viewer and operator
    groups hold every view permission of the app, this narrows it."""

    def has_view_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return has_role(request.user, Role.ADMIN) and super().has_view_permission(request, obj)


@admin.register(GlobalSettings)
class GlobalSettingsAdmin(AuditedModelAdmin):
    fieldsets = [
        (None, {"fields": ["organization", "project", "environment"]}),
        (
            "Intervals (seconds)",
            {
                "fields": [
                    "collection_interval",
                    "evaluation_interval",
                    "health_dispatch_interval",
                    "sweep_interval",
                    "cleanup_interval",
                ]
            },
        ),
        ("Retention and delivery", {"fields": ["retention_days", "max_retries", "notification_timeout", "batch_size"]}),
        ("Other", {"fields": ["prometheus_port", "log_level", "extra", "updated_at"]}),
    ]
    readonly_fields = ["updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not GlobalSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        # A list of one row is a detour: go to the row.
        if GlobalSettings.objects.filter(pk=1).exists():
            return HttpResponseRedirect(reverse("admin:monitoring_globalsettings_change", args=[1]))
        return super().changelist_view(request, extra_context)


@admin.register(MonitoringTarget)
class MonitoringTargetAdmin(EnableDisableAdmin):
    list_display = ["name", "slug", "kind", "endpoint", "parent", "check_interval", "enabled", "updated_at"]
    list_filter = ["kind", "enabled", ("parent", admin.EmptyFieldListFilter)]
    search_fields = ["name", "slug", "endpoint"]
    ordering = ["name"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["parent"]
    list_select_related = ["parent"]
    readonly_fields = ["created_at", "updated_at"]


@admin.register(Series)
class SeriesAdmin(AuditedModelAdmin):
    """Series are written by ingestion and removed by retention: read-only here, with the
    latest samples on each series' page."""

    list_display = ["name", "label_text", "last_value", "last_seen", "created_at"]
    search_fields = ["name", "=fingerprint"]
    ordering = ["name", "id"]
    show_full_result_count = False  # COUNT(*) over every series on each page is not free
    fields = ["name", "labels", "fingerprint", "last_value", "last_seen", "created_at", "latest_samples"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        # The confirmation page would list every sample of the series; retention deletes.
        return False

    @admin.display(description="labels")
    def label_text(self, obj: Series) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(obj.labels.items())) or "-"

    @admin.display(description="last sample at", ordering="last_ts")
    def last_seen(self, obj: Series) -> datetime | None:
        return epoch_ms_to_datetime(obj.last_ts)

    @admin.display(description=f"latest {LATEST_SAMPLES} samples")
    def latest_samples(self, obj: Series) -> str:
        samples = Sample.objects.filter(series=obj).order_by("-ts").values_list("ts", "value")[:LATEST_SAMPLES]
        rows = [(epoch_ms_to_datetime(ts).isoformat(timespec="milliseconds"), ts, value) for ts, value in samples]
        if not rows:
            return "No samples stored."
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            "<table><thead><tr><th>time (UTC)</th><th>epoch ms</th><th>value</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            body,
        )


@admin.register(ApiKey)
class ApiKeyAdmin(AdminOnlyViewMixin, AuditedModelAdmin):
    """Keys are created here through monitoring.apikeys: the plain key is shown once, in
    a message, and only its prefix and HMAC are stored."""

    list_display = ["name", "user", "prefix", "read_only", "state", "created_at", "expires_at", "last_used_at"]
    list_filter = ["read_only", ("revoked_at", admin.EmptyFieldListFilter), "expires_at", "created_at"]
    search_fields = ["name", "prefix", "user__username"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    autocomplete_fields = ["user"]
    list_select_related = ["user"]
    actions = ["revoke_selected"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["user", "name", "read_only", "expires_at"]
        return ["name", "user", "prefix", "read_only", "expires_at", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return []
        return ["user", "prefix", "created_at", "last_used_at", "revoked_at"]

    @admin.display(description="state")
    def state(self, obj: ApiKey) -> str:
        if obj.revoked_at is not None:
            return "revoked"
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return "expired"
        return "usable"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        new = create_api_key(user=obj.user, name=obj.name, expires_at=obj.expires_at, read_only=obj.read_only)
        # The form's instance becomes the stored key, so the admin redirects to it.
        obj.pk = new.api_key.pk
        obj.prefix = new.api_key.prefix
        obj.hashed_key = new.api_key.hashed_key
        obj.created_at = new.api_key.created_at
        obj._state.adding = False
        obj._state.db = new.api_key._state.db
        self.message_user(
            request,
            f"The new API key is {new.plain} — copy it now: it is not stored and will not be shown again.",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        count = self.update_with_audit(
            request, queryset.filter(revoked_at__isnull=True), AuditAction.REVOKE, revoked_at=timezone.now()
        )
        self.message_user(request, f"Revoked {count} API key(s).", messages.SUCCESS)


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(AdminOnlyViewMixin, admin.ModelAdmin):
    """Append-only: viewable and filterable by admins, never added, changed or deleted
    through the admin, by superusers neither."""

    list_display = ["at", "actor_name", "source", "action", "object_type", "object_repr", "api_key_name", "ip"]
    list_filter = ["source", "action", "object_type", "at"]
    search_fields = ["actor_name", "object_repr", "=object_id", "api_key_name", "=ip"]
    date_hierarchy = "at"
    ordering = ["-at", "-id"]
    show_full_result_count = False
    fields = [
        "at",
        "actor_name",
        "source",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "api_key_name",
        "ip",
        "before_json",
        "after_json",
        "prev_hash",
        "entry_hash",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    @admin.display(description="before")
    def before_json(self, obj: AuditLogEntry) -> str:
        return pretty_json(obj.before)

    @admin.display(description="after")
    def after_json(self, obj: AuditLogEntry) -> str:
        return pretty_json(obj.after)


@admin.register(PeriodicRun)
class PeriodicRunAdmin(admin.ModelAdmin):
    """The runs of the periodic jobs, one per job and window (monitoring.periodic): when each
    job last ran and how it went. Written by the tasks only; read-only here."""

    list_display = ["job", "window_start", "claimed_at", "finished_at", "ok", "detail"]
    list_filter = ["job", "ok"]
    date_hierarchy = "window_start"
    ordering = ["-window_start", "job"]
    show_full_result_count = False
    readonly_fields = ["job", "window_start", "claimed_at", "finished_at", "ok", "detail"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False
