"""State of health checking: check definitions with their current state, and results."""

import uuid

from django.db import models
from django.utils import timezone

from .choices import CheckKind, HealthStatus


class HealthCheckQuerySet(models.QuerySet):
    def enabled(self):
        return self.filter(enabled=True)


class HealthCheck(models.Model):
    name = models.CharField(max_length=200)
    key = models.SlugField(max_length=100, unique=True, help_text="The check's key in the config file.")
    kind = models.CharField(max_length=20, choices=CheckKind.choices, db_index=True)
    target = models.ForeignKey(
        "monitoring.MonitoringTarget", null=True, blank=True, on_delete=models.SET_NULL, related_name="health_checks"
    )
    config = models.JSONField(default=dict, blank=True, help_text="Kind-specific settings (url, host, port, command…).")
    interval = models.PositiveIntegerField(default=60, help_text="Seconds between runs (the target's check_interval).")
    timeout = models.PositiveIntegerField(default=10)
    failure_threshold = models.PositiveIntegerField(default=1)
    success_threshold = models.PositiveIntegerField(default=1)
    enabled = models.BooleanField(default=True, db_index=True)
    invalid_reason = models.TextField(blank=True, default="", help_text="Why an import disabled this check.")
    # Current state; survives restarts.
    status = models.CharField(max_length=10, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN, db_index=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_successes = models.PositiveIntegerField(default=0)
    last_checked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    next_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    running_since = models.DateTimeField(null=True, blank=True, help_text="Claimed by a worker at this time.")
    # Heartbeat checks: the uuid in the ping URL is the secret.
    ping_uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    last_ping_at = models.DateTimeField(null=True, blank=True)
    period = models.PositiveIntegerField(default=60, help_text="Heartbeat: seconds between expected pings.")
    grace = models.PositiveIntegerField(default=60, help_text="Heartbeat: seconds of lateness tolerated.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = HealthCheckQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        permissions = [("run_healthcheck", "Can run health checks on demand")]

    def __str__(self) -> str:
        return self.name


class HealthCheckResult(models.Model):
    health_check = models.ForeignKey(HealthCheck, on_delete=models.CASCADE, related_name="results")
    status = models.CharField(max_length=10, choices=HealthStatus.choices, db_index=True)
    response_time = models.FloatField(null=True, blank=True, help_text="Seconds.")
    message = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    checked_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-checked_at", "-id"]
        indexes = [models.Index(fields=["health_check", "checked_at"])]

    def __str__(self) -> str:
        return f"{self.health_check_id} {self.status} at {self.checked_at:%Y-%m-%d %H:%M:%S}"
