"""The import plan: what a ConfigSpec would create, update or leave unchanged, field by
field, compared with the database. Reads only; apply.py writes it."""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.contrib.auth.models import User
from django.db import models

from alerts.models import AlertRule, EscalationPolicy
from healthchecks.models import HealthCheck
from monitoring.apikeys import find_key_by_plain
from monitoring.audit import MASK
from monitoring.crypto import DecryptionError
from monitoring.models import GlobalSettings, MonitoringTarget
from notifications.models import NotificationChannel
from notifications.secrets import get_channel_secrets

from .errors import ConfigError, Problem
from .schema import ChannelSpec, ConfigSpec, KnownKeys, ObjectSpec, PolicySpec, SettingsSpec, TargetFacts

# The user that owns the API keys of the file: keys need an owner, and its role is theirs.
# Operator, because the original design's keys served scripts that acknowledge and resolve
# alerts; configuration stays with people who log in as admins.
CONFIG_API_USER = "config-api"
SETTINGS_LABEL = "global settings"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class FieldChange:
    field: str  # the model field written ("secrets", "steps" for those two)
    name: str  # the name shown, as the file spells it
    old: Any = None
    new: Any = None
    secret: bool = False

    def describe(self) -> str:
        if self.secret:
            return f"{self.name} (secret)"
        if isinstance(self.old, dict) and isinstance(self.new, dict):
            keys = [k for k in {**self.old, **self.new} if self.old.get(k) != self.new.get(k)]
            return ", ".join(f"{self.name}.{k} {_short(self.old.get(k))} -> {_short(self.new.get(k))}" for k in keys)
        return f"{self.name} {_short(self.old)} -> {_short(self.new)}"


def _short(value: Any) -> str:
    text = repr(sorted(value) if isinstance(value, (set, frozenset)) else value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Change:
    section: str
    key: str
    label: str
    action: Action
    fields: tuple[FieldChange, ...] = ()

    def describe(self) -> str:
        details = ", ".join(f.describe() for f in self.fields)
        return f"{self.action} {self.label}" + (f": {details}" if details else "")

    def changed(self, field_name: str) -> bool:
        return any(f.field == field_name for f in self.fields)


@dataclass(frozen=True)
class Plan:
    spec: ConfigSpec
    changes: tuple[Change, ...]
    secrets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # channel key -> to store
    warnings: tuple[str, ...] = ()

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action == action)

    @property
    def has_changes(self) -> bool:
        return any(change.action != Action.UNCHANGED for change in self.changes)

    def change(self, section: str, key: str) -> Change:
        for change in self.changes:
            if change.section == section and change.key == key:
                return change
        raise KeyError(f"{section}.{key} is not in the plan")


@dataclass(frozen=True)
class Binding:
    """How a keyed section maps onto its model."""

    model: type[models.Model]
    key_field: str
    foreign_keys: Mapping[str, tuple[type[models.Model], str]] = field(default_factory=dict)
    many_to_many: Mapping[str, tuple[type[models.Model], str]] = field(default_factory=dict)
    yaml_names: Mapping[str, str] = field(default_factory=dict)

    def yaml_name(self, field_name: str) -> str:
        return self.yaml_names.get(field_name, field_name)


BINDINGS: dict[str, Binding] = {
    "notifications": Binding(NotificationChannel, "key"),
    "monitoring_targets": Binding(
        MonitoringTarget, "slug", foreign_keys={"parent": (MonitoringTarget, "slug")}, yaml_names={"kind": "type"}
    ),
    "escalation_policies": Binding(EscalationPolicy, "key"),
    "alert_rules": Binding(
        AlertRule,
        "key",
        foreign_keys={"escalation_policy": (EscalationPolicy, "key")},
        many_to_many={"channels": (NotificationChannel, "key")},
        yaml_names={"metric": "metric_query", "channels": "notification_channels"},
    ),
    "health_checks": Binding(
        HealthCheck, "key", foreign_keys={"target": (MonitoringTarget, "slug")}, yaml_names={"kind": "check_type"}
    ),
}


def load_known_keys() -> KnownKeys:
    """What the file may refer to without defining it: the database's targets, channels
    and escalation policies."""
    targets = {
        slug: TargetFacts(endpoint, check_interval, timeout, parent)
        for slug, endpoint, check_interval, timeout, parent in MonitoringTarget.objects.values_list(
            "slug", "endpoint", "check_interval", "timeout", "parent__slug"
        )
    }
    return KnownKeys(
        targets=targets,
        channels=frozenset(NotificationChannel.objects.values_list("key", flat=True)),
        policies=frozenset(EscalationPolicy.objects.values_list("key", flat=True)),
    )


def current_value(instance: models.Model, binding: Binding, name: str) -> Any:
    """A stored field as the spec expresses it: related objects by their keys."""
    if name in binding.foreign_keys:
        related = getattr(instance, name)
        return getattr(related, binding.foreign_keys[name][1]) if related is not None else None
    if name in binding.many_to_many:
        key_field = binding.many_to_many[name][1]
        return frozenset(getattr(o, key_field) for o in getattr(instance, name).all())
    return getattr(instance, name)


def _same(binding: Binding, name: str, old: Any, new: Any) -> bool:
    if name in binding.many_to_many:
        return set(old) == set(new)
    return old == new


def build_plan(spec: ConfigSpec) -> Plan:
    """Compare `spec` with the database; ConfigError when the spec cannot be applied to
    it (a masked secret with nothing stored to keep)."""
    problems: list[Problem] = []
    warnings = list(spec.warnings)
    changes: list[Change] = []
    if spec.settings is not None:
        changes.append(_plan_settings(spec.settings))
    secrets: dict[str, dict[str, Any]] = {}
    changes += _plan_section("notifications", spec.channels, lambda s, i: _secret_changes(s, i, secrets, problems))
    changes += _plan_section("monitoring_targets", spec.targets)
    changes += _plan_section("escalation_policies", spec.policies, _step_changes)
    changes += _plan_section("alert_rules", spec.rules)
    changes += _plan_section("health_checks", spec.checks)
    changes += _plan_api_keys(spec, warnings)
    if problems:
        raise ConfigError(problems)
    return Plan(spec=spec, changes=tuple(changes), secrets=secrets, warnings=tuple(warnings))


def merged_extra(current: Mapping[str, Any], spec: SettingsSpec) -> dict[str, Any]:
    """GlobalSettings.extra after the import: the file's sections replace their entries,
    entries of sections the file leaves out stay."""
    merged = dict(current)
    for name, value in spec.extra.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def _plan_settings(spec: SettingsSpec) -> Change:
    instance = GlobalSettings.objects.filter(pk=1).first()
    if instance is None:
        return Change("settings", "global", SETTINGS_LABEL, Action.CREATE)
    desired = {**spec.columns, "extra": merged_extra(instance.extra, spec)}
    diffs = tuple(
        FieldChange(name, name, getattr(instance, name), value)
        for name, value in desired.items()
        if getattr(instance, name) != value
    )
    return Change("settings", "global", SETTINGS_LABEL, Action.UPDATE if diffs else Action.UNCHANGED, diffs)


# Changes a section has beyond its fields (a channel's secrets, a policy's steps).
ExtraChanges = Callable[[Any, Any], list[FieldChange]]


def _plan_section(section: str, specs: Sequence[ObjectSpec], extra: ExtraChanges | None = None) -> list[Change]:
    binding = BINDINGS[section]
    key_field = binding.key_field
    query = binding.model.objects.filter(**{f"{key_field}__in": [s.key for s in specs]})
    query = query.select_related(*binding.foreign_keys).prefetch_related(*binding.many_to_many)
    if section == "escalation_policies":
        query = query.prefetch_related("steps__channels")
    existing = {getattr(o, key_field): o for o in query}
    changes = []
    for spec in specs:
        instance = existing.get(spec.key)
        extra_changes = extra(spec, instance) if extra else []
        label = f"{section}.{spec.key}"
        if instance is None:
            changes.append(Change(section, spec.key, label, Action.CREATE))
            continue
        diffs = []
        for name, new in spec.fields.items():
            old = current_value(instance, binding, name)
            if not _same(binding, name, old, new):
                diffs.append(FieldChange(name, binding.yaml_name(name), old, new))
        diffs += extra_changes
        changes.append(Change(section, spec.key, label, Action.UPDATE if diffs else Action.UNCHANGED, tuple(diffs)))
    return changes


def _flatten(secrets: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for name, value in secrets.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _resolve_masks(
    path: str, desired: Mapping[str, Any], current: Mapping[str, Any] | None, why_none: str, problems: list[Problem]
) -> dict[str, Any]:
    """The secrets to store: a masked value keeps the stored one (an export masks them)."""
    resolved: dict[str, Any] = {}
    for name, value in desired.items():
        if isinstance(value, dict):
            inner = current.get(name) if current is not None else None
            inner = inner if isinstance(inner, dict) or current is None else {}
            resolved[name] = _resolve_masks(f"{path}.{name}", value, inner, why_none, problems)
        elif value != MASK:
            resolved[name] = value
        elif current is not None and name in current:
            resolved[name] = current[name]
        else:
            reason = why_none or "there is no stored value to keep"
            problems.append(Problem(f"{path}.{name}", f"is masked ({MASK}) but {reason}: give the real value"))
    return resolved


def _secret_changes(
    spec: ChannelSpec, instance: NotificationChannel | None, store: dict, problems: list[Problem]
) -> list[FieldChange]:
    current: dict[str, Any] | None = {}
    why_none = ""
    if instance is not None:
        try:
            current = get_channel_secrets(instance)
        except DecryptionError as exc:
            current, why_none = None, f"the stored secrets cannot be decrypted ({exc})"
    else:
        current, why_none = None, "the channel is new"
    resolved = _resolve_masks(f"notifications.{spec.key}", spec.secrets, current, why_none, problems)
    store[spec.key] = resolved
    old, new = _flatten(current or {}), _flatten(resolved)
    if current is None:
        old = {name: object() for name in new}  # unreadable: every secret counts as changed
    names = [n for n in {**old, **new} if old.get(n) != new.get(n)]
    return [FieldChange("secrets", name, secret=True) for name in names]


def _describe_steps(steps: Iterable[tuple[int, frozenset[str]]]) -> str:
    return "; ".join(f"{after} min: {', '.join(sorted(keys))}" for after, keys in steps) or "none"


def _step_changes(spec: PolicySpec, instance: EscalationPolicy | None) -> list[FieldChange]:
    if instance is None:
        return []
    current = [
        (step.after_minutes, frozenset(c.key for c in step.channels.all()))
        for step in sorted(instance.steps.all(), key=lambda s: s.order)
    ]
    desired = [(step.after_minutes, frozenset(step.channels)) for step in spec.steps]
    if current == desired:
        return []
    return [FieldChange("steps", "steps", _describe_steps(current), _describe_steps(desired))]


def _plan_api_keys(spec: ConfigSpec, warnings: list[str]) -> list[Change]:
    changes = []
    for key in spec.api_keys:
        label = f"security.authentication.api_keys[{key.index}]"
        existing = find_key_by_plain(key.plain)
        if existing is not None and not existing.is_usable():
            warnings.append(f"{label}: this key was revoked or has expired in the database; it stays so")
        action = Action.UNCHANGED if existing is not None else Action.CREATE
        changes.append(Change("api_keys", str(key.index), label, action))
    needs_user = any(c.action == Action.CREATE for c in changes)
    if needs_user and not User.objects.filter(username=CONFIG_API_USER).exists():
        changes.insert(0, Change("users", CONFIG_API_USER, f"user {CONFIG_API_USER}", Action.CREATE))
    return changes
