"""State of notifications: channels (secrets encrypted at rest) and the durable outbox."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .choices import ChannelKind, NotificationEvent, NotificationStatus


class NotificationChannel(models.Model):
    name = models.CharField(max_length=200)
    key = models.SlugField(max_length=100, unique=True, help_text='The name rules use, e.g. "email".')
    kind = models.CharField(max_length=20, choices=ChannelKind.choices, db_index=True)
    enabled = models.BooleanField(default=True, db_index=True)
    config = models.JSONField(default=dict, blank=True, help_text="Settings that are not secret.")
    secrets = models.TextField(blank=True, default="", help_text="Encrypted JSON of the channel's secrets.")
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    template = models.TextField(blank=True, default="", help_text="Overrides the kind's message template.")
    failing_since = models.DateTimeField(
        null=True, blank=True, help_text="Set when a send failed for good; cleared by the next successful send."
    )
    last_error = models.TextField(blank=True, default="", help_text="The error of the send that failed for good.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("test_notificationchannel", "Can send test notifications")]

    def __str__(self) -> str:
        return self.name


class Notification(models.Model):
    """One outbox row: a message to one channel about one alert event. Written in the same
    transaction as the transition that causes it; its status records the outcome."""

    alert = models.ForeignKey(
        "alerts.Alert", null=True, blank=True, on_delete=models.PROTECT, related_name="notifications"
    )
    channel = models.ForeignKey(NotificationChannel, on_delete=models.PROTECT, related_name="notifications")
    event = models.CharField(max_length=20, choices=NotificationEvent.choices, db_index=True)
    escalation_step = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=20, choices=NotificationStatus.choices, default=NotificationStatus.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, help_text="A sending row is re-claimed after this.")
    claim_token = models.CharField(
        max_length=32, blank=True, default="", help_text="Which claim holds a sending row: its writes check it."
    )
    last_error = models.TextField(blank=True, default="")
    permanent_failure = models.BooleanField(default=False)
    suppressed_reason = models.CharField(max_length=200, blank=True, default="")
    idempotency_key = models.CharField(max_length=64, unique=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "channel", "event", "escalation_step"],
                condition=Q(alert__isnull=False),
                name="one_notification_per_alert_channel_event_step",
            )
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event} to {self.channel} ({self.status})"
