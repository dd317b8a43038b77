"""Admin of health checking: check definitions (config validated as the API and the import
validate it) and their results, read-only."""

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from monitoring.admin_audit import EnableDisableAdmin, ReadOnlyAdmin

from .models import HealthCheck, HealthCheckResult


class HealthCheckForm(forms.ModelForm):
    """HealthCheck.clean refuses a config that cannot run, with its reasons (as the API does)."""

    class Meta:
        model = HealthCheck
        fields = [
            "name",
            "key",
            "kind",
            "target",
            "enabled",
            "config",
            "interval",
            "timeout",
            "failure_threshold",
            "success_threshold",
            "period",
            "grace",
        ]

    def save(self, commit: bool = True) -> HealthCheck:
        # The form only saves a config it found valid: the reason an import gave no longer holds.
        self.instance.invalid_reason = ""
        return super().save(commit)


@admin.register(HealthCheck)
class HealthCheckAdmin(EnableDisableAdmin):
    form = HealthCheckForm
    list_display = [
        "name",
        "key",
        "kind",
        "target",
        "status",
        "enabled",
        "interval",
        "last_checked_at",
        "consecutive_failures",
    ]
    list_filter = ["status", "kind", "enabled", ("invalid_reason", admin.EmptyFieldListFilter)]
    search_fields = ["name", "key", "target__name", "target__slug"]
    ordering = ["name"]
    prepopulated_fields = {"key": ["name"]}
    autocomplete_fields = ["target"]
    list_select_related = ["target"]
    readonly_fields = [
        "invalid_reason",
        "status",
        "consecutive_failures",
        "consecutive_successes",
        "last_checked_at",
        "next_due_at",
        "running_since",
        "ping_uuid",
        "last_ping_at",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "key", "kind", "target", "enabled", "invalid_reason"]}),
        ("Probe", {"fields": ["config", "interval", "timeout", "failure_threshold", "success_threshold"]}),
        ("Heartbeat", {"fields": ["period", "grace", "ping_uuid", "last_ping_at"], "classes": ["collapse"]}),
        (
            "State",
            {
                "fields": [
                    "status",
                    "consecutive_failures",
                    "consecutive_successes",
                    "last_checked_at",
                    "next_due_at",
                    "running_since",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
    ]
    # Worker bookkeeping, not a person's change: kept out of the audit's before/after.
    audit_exclude = (
        "updated_at",
        "status",
        "consecutive_failures",
        "consecutive_successes",
        "last_checked_at",
        "next_due_at",
        "running_since",
        "last_ping_at",
        "last_ping_kind",
        "last_start_at",
        "last_result",
        "claim_token",
    )


@admin.register(HealthCheckResult)
class HealthCheckResultAdmin(ReadOnlyAdmin):
    list_display = ["checked_at", "health_check", "status", "response_time", "message"]
    list_filter = ["status", "checked_at"]
    search_fields = ["health_check__name", "health_check__key", "message"]
    date_hierarchy = "checked_at"
    ordering = ["-checked_at", "-id"]
    list_select_related = ["health_check"]
    show_full_result_count = False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False  # retention removes results; by hand would leave holes in the history
