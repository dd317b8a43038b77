"""The base of every ModelAdmin of the project: each create, update and delete made
through the admin (forms, list editing, bulk deletes, actions) writes an audit entry."""

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.db import models, transaction
from django.http import HttpRequest

from .audit import audit_request, changed_fields, snapshot
from .choices import AuditAction, AuditSource
from .models import AuditLogEntry


class AuditedModelAdmin(admin.ModelAdmin):
    """A ModelAdmin whose every write is audited (source `admin`, the actor, their IP,
    before/after of the fields with secrets masked)."""

    # Fields left out of the before/after JSON: bookkeeping that changes on every save.
    audit_exclude: tuple[str, ...] = ("updated_at",)

    def audit_snapshot(self, obj: models.Model) -> dict[str, Any]:
        """What the audit log shows of `obj`; subclasses add what belongs to it (inlines)."""
        return snapshot(obj, exclude=self.audit_exclude)

    def audit(
        self,
        request: HttpRequest,
        obj: models.Model | None,
        action: AuditAction,
        *,
        before: dict | None = None,
        after: dict | None = None,
        **target: str,
    ) -> AuditLogEntry:
        return audit_request(
            request, source=AuditSource.ADMIN, action=action, obj=obj, before=before, after=after, **target
        )

    def save_model(self, request: HttpRequest, obj: models.Model, form: Any, change: bool) -> None:
        if change:
            # The form has already written its values on `obj`: the stored row is the "before".
            stored = type(obj)._default_manager.filter(pk=obj.pk).first()
            obj._audit_before = self.audit_snapshot(stored) if stored is not None else {}
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # Called after save_model on every form save (change form and list editing), once
        # many-to-many fields and inlines are saved too: the moment the "after" is whole.
        super().save_related(request, form, formsets, change)
        obj = form.instance
        after = self.audit_snapshot(obj)
        if not change:
            self.audit(request, obj, AuditAction.CREATE, after=after)
            return
        before, after = changed_fields(getattr(obj, "_audit_before", {}), after)
        if before or after:  # a save that changed nothing is no change
            self.audit(request, obj, AuditAction.UPDATE, before=before, after=after)

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        with transaction.atomic():
            self._audit_deletion(request, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        with transaction.atomic():
            for obj in queryset:
                self._audit_deletion(request, obj)
            super().delete_queryset(request, queryset)

    def _audit_deletion(self, request: HttpRequest, obj: models.Model) -> None:
        self.audit(request, obj, AuditAction.DELETE, before=self.audit_snapshot(obj))

    def update_with_audit(
        self, request: HttpRequest, objects: Iterable[models.Model], action: AuditAction, **values: Any
    ) -> int:
        """Set `values` on each object that differs, save it and audit it as `action`;
        return how many changed. For admin actions on a handful of selected rows."""
        changed = 0
        with transaction.atomic():
            for obj in objects:
                before = {name: getattr(obj, name) for name in values}
                if all(before[name] == value for name, value in values.items()):
                    continue
                for name, value in values.items():
                    setattr(obj, name, value)
                fields = list(values)
                if any(f.name == "updated_at" for f in obj._meta.concrete_fields):
                    fields.append("updated_at")
                obj.save(update_fields=fields)
                self.audit(request, obj, action, before=snapshot_values(before), after=snapshot_values(values))
                changed += 1
        return changed


def snapshot_values(values: dict[str, Any]) -> dict[str, Any]:
    """Values as JSON-ready as a snapshot's (model instances by id)."""
    return {k: (v.pk if isinstance(v, models.Model) else v) for k, v in values.items()}


class EnableDisableAdmin(AuditedModelAdmin):
    """Adds the enable/disable actions for models with an `enabled` flag."""

    actions = ["enable_selected", "disable_selected"]

    @admin.action(description="Enable selected %(verbose_name_plural)s", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        count = self.update_with_audit(request, queryset, AuditAction.ENABLE, enabled=True)
        self.message_user(request, f"Enabled {count} of {queryset.count()} selected.", messages.SUCCESS)

    @admin.action(description="Disable selected %(verbose_name_plural)s", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        count = self.update_with_audit(request, queryset, AuditAction.DISABLE, enabled=False)
        self.message_user(request, f"Disabled {count} of {queryset.count()} selected.", messages.SUCCESS)


class ReadOnlyAdmin(AuditedModelAdmin):
    """History rows (results, events, sent notifications): viewable, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False
