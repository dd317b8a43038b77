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
