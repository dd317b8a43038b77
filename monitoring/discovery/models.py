"""DiscoveredTarget: what discovery found, awaiting approval or linked to the target it
became. Part of the monitoring app (imported by monitoring.models)."""

from django.db import models
from django.utils import timezone

from ..choices import DiscoverySource, DiscoveryState, TargetKind


class DiscoveredTargetQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(state=DiscoveryState.PENDING)

    def devices(self):
        return self.filter(source=DiscoverySource.DEVICE)


class DiscoveredTarget(models.Model):
    """One thing discovery found, named by `identity` (`device:<id>`, `network:<ip>:<port>`,
    `file_sd:<host:port>`, `http_sd:<host:port>`), so finding it again updates this row."""

    source = models.CharField(max_length=20, choices=DiscoverySource.choices, db_index=True)
    identity = models.CharField(max_length=300, unique=True)
    state = models.CharField(
        max_length=20, choices=DiscoveryState.choices, default=DiscoveryState.PENDING, db_index=True
    )
    kind = models.CharField(max_length=20, choices=TargetKind.choices)
    name = models.CharField(max_length=200)
    endpoint = models.CharField(max_length=500, blank=True, default="")
    labels = models.JSONField(default=dict, blank=True)
    parent_ref = models.CharField(
        max_length=200, blank=True, default="", help_text="Device id of the gateway this device reports through."
    )
    details = models.JSONField(default=dict, blank=True, help_text="What discovery saw (protocol, where listed).")
    target = models.OneToOneField(
        "monitoring.MonitoringTarget", null=True, blank=True, on_delete=models.SET_NULL, related_name="discovery"
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    missing_since = models.DateTimeField(
        null=True, blank=True, help_text="No longer listed by its file_sd/http_sd source since then."
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True, default="")

    objects = DiscoveredTargetQuerySet.as_manager()

    class Meta:
        app_label = "monitoring"
        ordering = ["-first_seen_at", "-id"]
        indexes = [models.Index(fields=["state", "source"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_source_display()}, {self.get_state_display().lower()})"
