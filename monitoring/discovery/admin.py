"""Admin of discovered targets: filter by state and source, approve or reject the selected
ones (each decision audited). Registered by monitoring.admin."""

from django.contrib import admin, messages
from django.db import models
from django.http import HttpRequest

from ..admin_audit import AuditedModelAdmin
from ..audit import client_ip
from ..choices import AuditSource, DiscoveryState, Role
from ..roles import has_role
from .models import DiscoveredTarget
from .services import DiscoveryError, approve_discovered, reject_discovered


@admin.register(DiscoveredTarget)
class DiscoveredTargetAdmin(AuditedModelAdmin):
    """Discovery writes these rows; an admin only decides on them (or deletes a proposal,
    which discovery makes again if it finds the thing again)."""

    list_display = ["name", "source", "state", "kind", "endpoint", "parent_ref", "target", "last_seen_at"]
    list_filter = ["state", "source", "kind", ("missing_since", admin.EmptyFieldListFilter)]
    search_fields = ["name", "identity", "endpoint", "parent_ref"]
    ordering = ["-first_seen_at", "-id"]
    list_select_related = ["target"]
    actions = ["approve_selected", "reject_selected"]
    readonly_fields = [
        "source",
        "identity",
        "state",
        "kind",
        "name",
        "endpoint",
        "labels",
        "parent_ref",
        "details",
        "target",
        "first_seen_at",
        "last_seen_at",
        "missing_since",
        "decided_at",
        "decided_by",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False  # the page is for reading; decisions go through the actions

    def has_approve_permission(self, request: HttpRequest) -> bool:
        # Approving creates targets and checks: configuration, the admin role's.
        return has_role(request.user, Role.ADMIN)

    @admin.action(description="Approve selected discovered targets", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        approved = 0
        for row in queryset.exclude(state=DiscoveryState.APPROVED):
            approve_discovered(discovered=row, actor=request.user, source=AuditSource.ADMIN, ip=client_ip(request))
            approved += 1
        self.message_user(request, f"Approved {approved} discovered target(s).", messages.SUCCESS)

    @admin.action(description="Reject selected discovered targets", permissions=["approve"])
    def reject_selected(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        rejected, refused = 0, []
        for row in queryset.filter(state=DiscoveryState.PENDING):
            try:
                reject_discovered(discovered=row, actor=request.user, source=AuditSource.ADMIN, ip=client_ip(request))
                rejected += 1
            except DiscoveryError as exc:
                refused.append(str(exc))
        self.message_user(request, f"Rejected {rejected} discovered target(s).", messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.WARNING)
