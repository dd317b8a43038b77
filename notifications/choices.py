"""Statuses and kinds of the notifications app."""

from django.db import models


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    SLACK = "slack", "Slack"
    SMS = "sms", "SMS (Twilio)"
    WEBHOOK = "webhook", "Webhook"
    PAGERDUTY = "pagerduty", "PagerDuty"


class NotificationEvent(models.TextChoices):
    FIRING = "firing", "Firing"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"
    ESCALATION = "escalation", "Escalation"
    REMINDER = "reminder", "Reminder"
    TEST = "test", "Test"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed"
