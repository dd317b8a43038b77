"""Export: the database written back in the format of monitoring-config.yaml, so that
importing an export changes nothing. Secrets are masked unless asked for."""

import copy
from typing import Any

from alerts.models import AlertRule, EscalationPolicy
from healthchecks.models import HealthCheck
from monitoring.audit import MASK
from monitoring.crypto import DecryptionError
from monitoring.models import ApiKey, GlobalSettings, MonitoringTarget
from notifications.models import NotificationChannel
from notifications.secrets import get_channel_secrets, merge_channel_settings

from .plan import CONFIG_API_USER
from .schema import CHANNEL_FIELDS, TargetFacts, check_timing, default_channel_name
from .yamlio import dump_yaml

HEADER = "# monitoring-config.yaml written by `manage.py export_config`; `import_config` reads it back.\n"


class ExportError(Exception):
    pass


def _keys_by_pk(related: Any) -> list[str]:
    return [obj.key for obj in sorted(related.all(), key=lambda obj: obj.pk)]


def _plain_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _masked(secrets: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _masked(value) if isinstance(value, dict) else (MASK if value not in (None, "") else value)
        for name, value in secrets.items()
    }


def export_channel(channel: NotificationChannel, *, include_secrets: bool) -> dict[str, Any]:
    try:
        secrets = get_channel_secrets(channel)
    except DecryptionError as exc:
        raise ExportError(f"notifications.{channel.key}: the stored secrets cannot be decrypted: {exc}") from None
    item: dict[str, Any] = {"enabled": channel.enabled}
    if channel.key != channel.kind:
        item["kind"] = channel.kind
    if channel.name != default_channel_name(channel.key, channel.kind):
        item["name"] = channel.name
    settings = merge_channel_settings(channel.config, secrets if include_secrets else _masked(secrets))
    # In the order the file format lists them, wherever config and secrets split them.
    order = list(CHANNEL_FIELDS.get(channel.kind, {}))
    item.update(sorted(settings.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    if channel.rate_limit_per_minute is not None:
        item["rate_limit_per_minute"] = channel.rate_limit_per_minute
    if channel.template:
        item["template"] = channel.template
    return item


def export_target(target: MonitoringTarget) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": target.name,
        "type": target.kind,
        "endpoint": target.endpoint,
        "check_interval": target.check_interval,
        "timeout": target.timeout,
    }
    if target.labels:
        item["labels"] = target.labels
    if target.parent is not None:
        item["parent"] = target.parent.slug
    if not target.enabled:
        item["enabled"] = False
    return item


def export_rule(rule: AlertRule) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": rule.name,
        "description": rule.description,
        **({"metric_query": rule.metric} if rule.metric or not rule.expr else {}),  # an expr rule may have none
        "threshold": _plain_number(rule.threshold),
        "comparison": rule.comparison,
        "severity": rule.severity,
        "duration": rule.duration,
        "notification_channels": _keys_by_pk(rule.channels),
    }
    optional = {
        "enabled": False if not rule.enabled else None,
        "matchers": rule.matchers or None,
        "labels": rule.labels or None,
        "escalation_policy": rule.escalation_policy.key if rule.escalation_policy else None,
        "resolve_after": rule.resolve_after,
        "evaluation_interval": rule.evaluation_interval,
        "expr": rule.expr or None,
    }
    item.update({name: value for name, value in optional.items() if value is not None})
    return item


def export_check(check: HealthCheck) -> dict[str, Any]:
    item: dict[str, Any] = {"name": check.name, "check_type": check.kind}
    target = check.target
    if target is not None:
        item["target"] = target.slug
    item["config"] = check.config
    facts = TargetFacts(target.endpoint, target.check_interval, target.timeout) if target else None
    interval, timeout = check_timing(None, None, check.config, facts)
    if check.interval != interval:
        item["interval"] = check.interval
    if check.timeout != timeout:
        item["timeout"] = check.timeout
    # A check the import switched off for being invalid is switched on again by importing
    # it once it is fixed, so only a check disabled by a person says `enabled: false`.
    if not check.enabled and not check.invalid_reason:
        item["enabled"] = False
    for name, default in (("failure_threshold", 1), ("success_threshold", 1), ("period", 60), ("grace", 60)):
        if getattr(check, name) != default:
            item[name] = getattr(check, name)
    return item


def export_policy(policy: EscalationPolicy) -> dict[str, Any]:
    item: dict[str, Any] = {"name": policy.name}
    if policy.severity:
        item["severity"] = policy.severity
    item["steps"] = [
        {"after_minutes": step.after_minutes, "notification_channels": _keys_by_pk(step.channels)}
        for step in sorted(policy.steps.all(), key=lambda s: s.order)
    ]
    item["repeat"] = policy.repeat
    if not policy.enabled:
        item["enabled"] = False
    return item


def _export_security(stored: dict[str, Any]) -> dict[str, Any]:
    security = copy.deepcopy(stored)
    # Only hashes of API keys are stored: an export names each with the mask, which an
    # import reads as "keep this key".
    count = ApiKey.objects.usable().filter(user__username=CONFIG_API_USER).count()
    if count:
        security.setdefault("authentication", {})["api_keys"] = [MASK] * count
    return security


def export_document(*, include_secrets: bool = False) -> dict[str, Any]:
    """The database as a configuration document, sections in the file's order."""
    settings = GlobalSettings.objects.filter(pk=1).first() or GlobalSettings()
    extra = settings.extra or {}
    document: dict[str, Any] = {
        "global": {
            "organization": settings.organization,
            "project": settings.project,
            "environment": settings.environment,
        },
        "metrics": {
            "collection_interval": settings.collection_interval,
            "retention_days": settings.retention_days,
            "prometheus_port": settings.prometheus_port,
        },
        "alerting": {
            "evaluation_interval": settings.evaluation_interval,
            "notification_timeout": settings.notification_timeout,
            "max_retries": settings.max_retries,
        },
        "notifications": {
            channel.key: export_channel(channel, include_secrets=include_secrets)
            for channel in NotificationChannel.objects.order_by("pk")
        },
        "monitoring_targets": {
            target.slug: export_target(target)
            for target in MonitoringTarget.objects.select_related("parent").order_by("pk")
        },
        "alert_rules": {
            rule.key: export_rule(rule)
            for rule in AlertRule.objects.select_related("escalation_policy")
            .prefetch_related("channels")
            .order_by("pk")
        },
        "health_checks": {
            check.key: export_check(check) for check in HealthCheck.objects.select_related("target").order_by("pk")
        },
        "escalation_policies": {
            policy.key: export_policy(policy)
            for policy in EscalationPolicy.objects.prefetch_related("steps__channels").order_by("pk")
        },
        "database": {
            "retention_days": settings.retention_days,
            "cleanup_interval": settings.cleanup_interval,
            "batch_size": settings.batch_size,
        },
    }
    if "performance" in extra:
        document["performance"] = copy.deepcopy(extra["performance"])
    security = _export_security(extra.get("security", {}))
    if security:
        document["security"] = security
    document["logging"] = {"level": settings.log_level, **extra.get("logging", {})}
    return document


def export_config_text(*, include_secrets: bool = False) -> str:
    return HEADER + dump_yaml(export_document(include_secrets=include_secrets))
