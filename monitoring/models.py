"""State of the monitoring core: targets, metric series and samples, global settings,
API keys and the append-only audit log."""

import math

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .choices import AuditAction, AuditSource, TargetKind


class GlobalSettings(models.Model):
    """The singleton of global settings (row id 1): the `global`, `metrics`, `alerting`,
    `database` and `logging` sections of monitoring-config.yaml."""

    organization = models.CharField(max_length=200, blank=True, default="")
    project = models.CharField(max_length=200, blank=True, default="")
    environment = models.CharField(max_length=100, blank=True, default="")
    collection_interval = models.PositiveIntegerField(default=60, help_text="Seconds between system collections.")
    retention_days = models.PositiveIntegerField(default=30)
    prometheus_port = models.PositiveIntegerField(null=True, blank=True, default=8080)
    evaluation_interval = models.PositiveIntegerField(default=60, help_text="Seconds between rule evaluations.")
    notification_timeout = models.PositiveIntegerField(default=300, help_text="Seconds a send may take.")
    max_retries = models.PositiveIntegerField(default=3)
    health_dispatch_interval = models.PositiveIntegerField(default=10, help_text="Seconds between due-check rounds.")
    sweep_interval = models.PositiveIntegerField(default=15, help_text="Seconds between outbox/escalation sweeps.")
    cleanup_interval = models.PositiveIntegerField(default=3600)
    batch_size = models.PositiveIntegerField(default=1000)
    log_level = models.CharField(max_length=10, default="INFO")
    # Sections kept as imported so that export writes them back unchanged
    # (performance, logging flags, security.authorization/encryption, roles).
    extra = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "global settings"
        verbose_name_plural = "global settings"

    def __str__(self) -> str:
        return "Global settings"

    def save(self, *args, **kwargs):
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> "GlobalSettings":
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class MonitoringTarget(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True, help_text="The target's key in the config file.")
    kind = models.CharField(max_length=20, choices=TargetKind.choices, default=TargetKind.SERVICE, db_index=True)
    endpoint = models.CharField(max_length=500, blank=True, default="")
    check_interval = models.PositiveIntegerField(default=60)
    timeout = models.PositiveIntegerField(default=10)
    labels = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="The gateway or uplink this target depends on.",
    )
    enabled = models.BooleanField(default=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["name"])]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        ancestor = self.parent
        while ancestor is not None:
            if ancestor.pk == self.pk and self.pk is not None:
                raise ValidationError({"parent": "A target cannot depend on itself, directly or through its parents."})
            ancestor = ancestor.parent


class NaNFloatField(models.FloatField):
    """A float whose NaN is stored as NULL. SQLite has no NaN (binding one stores NULL), so
    both databases store it so and SQL aggregates skip NaN alike; Python reads NaN back."""

    def __init__(self, *args, **kwargs):
        kwargs["null"] = True
        super().__init__(*args, **kwargs)

    def from_db_value(self, value, expression, connection):
        return math.nan if value is None else value

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return None if value is None or math.isnan(value) else value


class Series(models.Model):
    """One time series: a metric name and a label set. `fingerprint` identifies it."""

    name = models.CharField(max_length=200, db_index=True)
    labels = models.JSONField(default=dict)
    fingerprint = models.CharField(max_length=32, unique=True)
    last_value = NaNFloatField(blank=True, help_text="NaN until the first sample (see last_ts).")
    last_ts = models.BigIntegerField(null=True, blank=True, help_text="Epoch milliseconds of the last sample.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "series"
        # No index may include last_value or last_ts: every batch moves them, and on
        # PostgreSQL that update stays a cheap in-page (HOT) update only while no index
        # covers them (docs/decisions.md, "Metric ingestion and storage").

    def __str__(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{inner}}}"


class Sample(models.Model):
    """One sample; (series, ts) is the key, so a retried batch cannot store a sample twice.
    Timestamps are epoch milliseconds, as in Prometheus. On PostgreSQL the table is
    partitioned by day of `ts` (migration 0003; monitoring.storage keeps the partitions).
    NaN values are stored as NULL (NaNFloatField)."""

    pk = models.CompositePrimaryKey("series", "ts")
    # The primary key (series, ts) is the series index; a second one would only slow inserts.
    series = models.ForeignKey(Series, on_delete=models.CASCADE, db_constraint=False, db_index=False)
    ts = models.BigIntegerField()
    value = NaNFloatField()

    class Meta:
        indexes = [models.Index(fields=["ts"], name="sample_ts_idx")]

    def __str__(self) -> str:
        return f"{self.series_id}@{self.ts}={self.value}"


class ApiKeyQuerySet(models.QuerySet):
    def usable(self, now=None):
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    """An API key: the plain key is shown once; only its prefix and an HMAC are stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True)
    hashed_key = models.CharField(max_length=128)
    read_only = models.BooleanField(default=False, help_text="Read-only whatever the owner's role.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class AuditLogImmutableError(Exception):
    """An attempt to change or delete an audit entry: the log is append-only."""


class AuditLogQuerySet(models.QuerySet):
    """No bulk update or delete: the only write is monitoring.audit.record_audit's insert
    (PostgreSQL's trigger refuses the rest to raw SQL too)."""

    def update(self, **kwargs):
        raise AuditLogImmutableError("audit log entries cannot be changed")

    def delete(self):
        raise AuditLogImmutableError("audit log entries cannot be deleted")


class AuditLogEntry(models.Model):
    """An append-only record of a change a person made. It names the object by content
    type, id and text instead of a foreign key, so deleting the object keeps the entry."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    # No database constraint and nothing done on delete: removing a user must not UPDATE
    # the append-only table (its trigger would refuse). actor_id then names a removed
    # user's id (never reused: ids are AUTOINCREMENT/sequences) and actor_name the user.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True, default="", db_index=True)
    source = models.CharField(max_length=20, choices=AuditSource.choices, db_index=True)
    action = models.CharField(max_length=20, choices=AuditAction.choices, db_index=True)
    object_type = models.CharField(max_length=100, blank=True, default="", db_index=True)
    object_id = models.CharField(max_length=64, blank=True, default="")
    object_repr = models.CharField(max_length=300, blank=True, default="")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    api_key_name = models.CharField(max_length=100, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True, default="")
    entry_hash = models.CharField(max_length=64, blank=True, default="")

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.object_type} {self.object_repr}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AuditLogImmutableError("audit log entries cannot be changed")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditLogImmutableError("audit log entries cannot be deleted")


# Discovery's model lives with its code; importing it here registers it with the app.
from .discovery.models import DiscoveredTarget  # noqa: E402, F401


class PeriodicRun(models.Model):
    """One run of a periodic job for one window of its interval: the row is the claim
    (unique per job and window, so a second run of the same window does nothing), then
    the outcome. monitoring.periodic writes it; the watchdog reads it."""

    job = models.CharField(max_length=200, help_text="The Celery task's name.")
    window_start = models.DateTimeField()
    claimed_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True, help_text="Empty while it runs (or if its worker died).")
    detail = models.TextField(blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "window_start"], name="periodicrun_one_per_window")]

    def __str__(self) -> str:
        return f"{self.job} @ {self.window_start:%Y-%m-%d %H:%M:%S}"
