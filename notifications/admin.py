"""Admin of notifications: channels (secrets write-only, encrypted at rest) and the outbox,
read-only."""

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from monitoring.admin_audit import EnableDisableAdmin, ReadOnlyAdmin
from monitoring.audit import MASK
from monitoring.config_io.channels import channel_settings_problems, setting_name
from monitoring.config_io.errors import Problem
from monitoring.crypto import DecryptionError

from .choices import ChannelKind
from .models import Notification, NotificationChannel
from .secrets import (
    HEADERS,
    SECRET_FIELDS,
    get_channel_secrets,
    is_secret_header,
    merge_channel_settings,
    set_channel_secrets,
    split_channel_settings,
)

# One write-only input per secret setting of any kind, named after the setting.
SECRET_INPUTS: dict[str, str] = {
    name: ", ".join(str(ChannelKind(kind).label) for kind, names in SECRET_FIELDS.items() if name in names)
    for name in dict.fromkeys(n for names in SECRET_FIELDS.values() for n in names)
}
KEEP_HELP = "Write-only: leave empty to keep the stored value. Stored encrypted and never shown again."


def _not_the_mask(value: str) -> None:
    if value == MASK:
        raise forms.ValidationError(f"{MASK} is how exports hide a secret, not a secret: give the real value.")


def _secret_input_name(name: str) -> str:
    return f"new_{name}"


class NotificationChannelForm(forms.ModelForm):
    """Secrets go in write-only inputs (empty keeps the stored value) and never come back
    out; `config` holds only what is not secret."""

    new_headers = forms.CharField(
        required=False,
        label="New secret headers",
        widget=forms.PasswordInput(render_value=False),
        help_text='Webhook: secret headers as JSON, e.g. {"Authorization": "Bearer …"}; replaces the stored '
        "ones. " + KEEP_HELP,
    )
    clear_secrets = forms.BooleanField(required=False, help_text="Remove every stored secret of this channel.")

    class Meta:
        model = NotificationChannel
        fields = ["name", "key", "kind", "enabled", "config", "rate_limit_per_minute", "template"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, kinds in SECRET_INPUTS.items():
            self.fields[_secret_input_name(name)] = forms.CharField(
                required=False,
                label=f"New {name.replace('_', ' ')}",
                strip=False,
                widget=forms.PasswordInput(render_value=False),
                help_text=f"{kinds}. {KEEP_HELP}",
                validators=[_not_the_mask],
            )

    def clean_new_headers(self) -> dict[str, str] | None:
        raw = self.cleaned_data.get("new_headers", "").strip()
        if not raw:
            return None
        try:
            headers = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError("Secret headers must be a JSON object of header names to values.") from exc
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise forms.ValidationError("Secret headers must be a JSON object of header names to string values.")
        return headers

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind, config = data.get("kind"), data.get("config")
        if not kind or not isinstance(config, dict):
            if kind and "config" in data:
                self.add_error("config", "The settings are a JSON object of setting names to values.")
            return data
        plain, secret = split_channel_settings(kind, config)
        if secret:
            self.add_error(
                "config",
                f"{', '.join(sorted(secret))} must not be stored in plain text: use the secret inputs below instead.",
            )
            return data
        stored = self.stored_secrets
        updated = self.updated_secrets(stored)
        secrets = stored if updated is None else updated
        for problem in channel_settings_problems(kind, merge_channel_settings(plain, secrets)):
            self.add_error(self.input_of(problem, kind, plain), str(problem))
        return data

    @property
    def stored_secrets(self) -> dict[str, Any]:
        """The channel's stored secrets; none when they no longer decrypt (new ones must be given)."""
        if self.instance.pk is None or not self.instance.secrets:
            return {}
        try:
            return get_channel_secrets(self.instance)
        except DecryptionError:
            return {}

    def input_of(self, problem: Problem, kind: str, config: dict[str, Any]) -> str:
        """The input to show a settings problem on: the secret's own input, else `config`;
        a stored secret that the kind does not read is removed with `clear_secrets`."""
        name = setting_name(problem.path)
        if name == HEADERS and problem.path != HEADERS:
            header = problem.path[len(HEADERS) + 1 :]
            plain_headers = config.get(HEADERS)
            in_config = isinstance(plain_headers, dict) and header in plain_headers
            return "config" if in_config or not is_secret_header(header) else "new_headers"
        if name in SECRET_FIELDS[kind]:
            return _secret_input_name(name)
        if name in config or name not in SECRET_INPUTS:
            return "config"
        return "clear_secrets"

    def updated_secrets(self, current: dict[str, Any]) -> dict[str, Any] | None:
        """The channel's secrets after this form, or None when the form leaves them as they are."""
        if self.cleaned_data.get("clear_secrets"):
            return {}
        kind = self.cleaned_data["kind"]
        given = {
            name: self.cleaned_data[_secret_input_name(name)]
            for name in SECRET_FIELDS.get(kind, ())
            if self.cleaned_data.get(_secret_input_name(name))
        }
        headers = self.cleaned_data.get("new_headers")
        if kind == ChannelKind.WEBHOOK and headers is not None:
            given[HEADERS] = headers
        if not given:
            return None
        return {**current, **given}


@admin.register(NotificationChannel)
class NotificationChannelAdmin(EnableDisableAdmin):
    form = NotificationChannelForm
    list_display = ["name", "key", "kind", "enabled", "rate_limit_per_minute", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "key"]
    ordering = ["name"]
    prepopulated_fields = {"key": ["name"]}
    readonly_fields = ["stored_secrets", "created_at", "updated_at"]

    def get_fieldsets(self, request: HttpRequest, obj: NotificationChannel | None = None) -> list:
        secret_inputs = [_secret_input_name(name) for name in SECRET_INPUTS]
        return [
            (None, {"fields": ["name", "key", "kind", "enabled", "rate_limit_per_minute"]}),
            ("Settings", {"fields": ["config", "template"]}),
            ("Secrets", {"fields": ["stored_secrets", *secret_inputs, "new_headers", "clear_secrets"]}),
            ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
        ]

    def get_form(self, request: HttpRequest, obj: NotificationChannel | None = None, change: bool = False, **kwargs):
        # The fieldsets name the secret inputs, which the form adds itself; the model
        # form is built from the model's fields only.
        kwargs["fields"] = NotificationChannelForm.Meta.fields
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="stored secrets")
    def stored_secrets(self, obj: NotificationChannel) -> str:
        # Names only, never values.
        if obj.pk is None or not obj.secrets:
            return "none"
        try:
            secrets = get_channel_secrets(obj)
        except DecryptionError:
            return "stored, but they cannot be decrypted with the configured keys"
        names = [f"{HEADERS}: {', '.join(sorted(v))}" if k == HEADERS else k for k, v in sorted(secrets.items())]
        return ", ".join(names) or "none"

    def save_model(self, request: HttpRequest, obj: NotificationChannel, form: Any, change: bool) -> None:
        current = form.stored_secrets if change else {}
        super().save_model(request, obj, form, change)
        updated = form.updated_secrets(current)
        if updated is not None:
            # Encryption binds the value to the row's id, so this follows the first save.
            set_channel_secrets(obj, updated)
            obj.save(update_fields=["secrets"])


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "channel",
        "event",
        "alert",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "short_error",
    ]
    list_filter = ["status", "event", "permanent_failure", "channel", "created_at"]
    search_fields = ["alert__rule__name", "last_error", "=idempotency_key"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    list_select_related = ["channel", "alert__rule"]
    show_full_result_count = False

    @admin.display(description="last error")
    def short_error(self, obj: Notification) -> str:
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False  # the outbox is history; the cleanup command removes old rows
