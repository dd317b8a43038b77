"""Statuses and kinds of the alerts app."""

from django.db import models


class Comparison(models.TextChoices):
    GT = ">", ">"
    LT = "<", "<"
    GE = ">=", ">="
    LE = "<=", "<="
    EQ = "==", "=="
    NE = "!=", "!="


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class AlertState(models.TextChoices):
    PENDING = "pending", "Pending"
    ACTIVE = "active", "Firing"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"
    # A pending alert whose condition cleared before it fired (Prometheus drops it).
    INACTIVE = "inactive", "Dropped while pending"


# States in which an alert is still open: at most one per (rule, series).
OPEN_STATES = (AlertState.PENDING, AlertState.ACTIVE, AlertState.ACKNOWLEDGED)
FIRING_STATES = (AlertState.ACTIVE, AlertState.ACKNOWLEDGED)


class MatchOp(models.TextChoices):
    EQ = "=", "="
    NE = "!=", "!="
    RE = "=~", "=~"
    NRE = "!~", "!~"


class ScheduleKind(models.TextChoices):
    WEEKLY = "weekly", "Weekly"
    CRON = "cron", "Cron expression"
