"""Statuses and kinds of the monitoring app."""

from django.db import models


class TargetKind(models.TextChoices):
    SERVICE = "service", "Service"
    DATABASE = "database", "Database"
    DEVICE = "device", "Device"
    HOST = "host", "Host"
    PROMETHEUS = "prometheus", "Prometheus exporter"


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"


class AuditSource(models.TextChoices):
    ADMIN = "admin", "Django admin"
    API = "api", "REST API"
    DASHBOARD = "dashboard", "Dashboard"
    CLI = "cli", "Command line"
    SYSTEM = "system", "System"


class AuditAction(models.TextChoices):
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"
    ACKNOWLEDGE = "acknowledge", "Acknowledge"
    RESOLVE = "resolve", "Resolve"
    SILENCE = "silence", "Silence"
    ENABLE = "enable", "Enable"
    DISABLE = "disable", "Disable"
    RUN = "run", "Run"
    TEST = "test", "Test"
    IMPORT = "import", "Import"
    LOGIN = "login", "Login"
    LOGIN_FAILED = "login_failed", "Failed login"
    LOGOUT = "logout", "Logout"
    REVOKE = "revoke", "Revoke"
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    ROTATE = "rotate", "Rotate key"


class DiscoverySource(models.TextChoices):
    DEVICE = "device", "Device registration"
    NETWORK = "network", "Network scan"
    FILE_SD = "file_sd", "file_sd file"
    HTTP_SD = "http_sd", "http_sd endpoint"


class DiscoveryState(models.TextChoices):
    PENDING = "pending", "Awaiting approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
