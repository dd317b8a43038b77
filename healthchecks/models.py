"""State of health checking: check definitions with their current state, and results."""

import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .choices import CheckKind, HealthStatus, PingKind
from .validation import check_config_errors

# A batch of checks runs inside one Celery task, whose soft time limit is 240 s.
MAX_CHECK_TIMEOUT = 120


class HealthCheckQuerySet(models.QuerySet):
    def enabled(self):
        return self.filter(enabled=True)

    def for_listing(self):
        """Checks with their target and last result, in one query."""
        return self.select_related("target", "last_result")


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
    claim_token = models.UUIDField(null=True, blank=True, editable=False, help_text="Who holds the running claim.")
    last_result = models.ForeignKey(
        "HealthCheckResult", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    # Heartbeat checks: the uuid in the ping URL is the secret.
    ping_uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    last_ping_at = models.DateTimeField(null=True, blank=True)
    last_ping_kind = models.CharField(max_length=10, choices=PingKind.choices, blank=True, default="")
    last_start_at = models.DateTimeField(null=True, blank=True, help_text="Heartbeat: the last /start ping.")
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

    def clean(self) -> None:
        """Refuse a check that cannot run, with the reasons: the admin and the API both call it."""
        errors: dict[str, list[str]] = {}
        if not self.timeout or self.timeout > MAX_CHECK_TIMEOUT:
            errors["timeout"] = [f"The timeout must be between 1 and {MAX_CHECK_TIMEOUT} seconds."]
        if not self.interval:
            errors["interval"] = ["The interval must be at least 1 second."]
        for name in ("failure_threshold", "success_threshold"):
            if not getattr(self, name):
                errors[name] = ["A threshold must be at least 1."]
        if self.kind == CheckKind.HEARTBEAT and not self.period:
            errors["period"] = ["The period must be at least 1 second."]
        endpoint = self.target.endpoint if self.target_id and self.target else ""
        reasons = check_config_errors(self.kind, self.config, endpoint=endpoint)
        if reasons:
            errors["config"] = reasons
        if errors:
            raise ValidationError(errors)

    @property
    def effective_timeout(self) -> float:
        """The config's own `timeout` (as the config file may give one) wins over the field."""
        value = self.config.get("timeout") if isinstance(self.config, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(min(value, MAX_CHECK_TIMEOUT))
        return float(min(self.timeout or 1, MAX_CHECK_TIMEOUT))


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
