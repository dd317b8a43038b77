"""Statuses and kinds of the healthchecks app."""

from django.db import models


class CheckKind(models.TextChoices):
    HTTP = "http", "HTTP"
    TCP = "tcp", "TCP connect"
    PING = "ping", "Ping (ICMP)"
    CUSTOM = "custom", "Custom command"
    HEARTBEAT = "heartbeat", "Heartbeat (push)"
    TLS_CERTIFICATE = "tls_certificate", "TLS certificate"
    DNS = "dns", "DNS"


class HealthStatus(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"
    UNKNOWN = "unknown", "Unknown"


class PingKind(models.TextChoices):
    """What a heartbeat ping reports: `/api/heartbeat/{uuid}`, `/fail` or `/start`."""

    SUCCESS = "success", "Success"
    FAIL = "fail", "Failure"
    START = "start", "Start"


# A result's status as the service's health: up (1) or down (0). Warning is degraded but up.
UP_STATUSES = frozenset({HealthStatus.HEALTHY, HealthStatus.WARNING})
