"""The configuration file's format: validates a loaded document as a whole and turns it into
a ConfigSpec of model field values, or raises ConfigError listing every problem. Pure: what
the database already holds comes in as KnownKeys."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.choices import Comparison, Severity
from healthchecks.choices import CheckKind
from healthchecks.validation import check_config_errors
from monitoring.audit import MASK
from monitoring.choices import Role, TargetKind
from monitoring.models import GlobalSettings
from monitoring.promql import validate_expr
from notifications.choices import ChannelKind
from notifications.secrets import split_channel_settings

from .channels import CHANNEL_COMMON_FIELDS, CHANNEL_FIELDS, channel_warnings
from .errors import ConfigError, Problem
from .fields import (
    Field,
    Invalid,
    as_is,
    boolean,
    describe,
    join,
    json_value,
    key_name,
    list_of,
    mapping_of,
    metric_name,
    non_negative,
    number,
    one_of,
    optional,
    port,
    positive,
    read_fields,
    secret,
    text,
)

SECTIONS = (
    "global",
    "metrics",
    "alerting",
    "notifications",
    "monitoring_targets",
    "alert_rules",
    "health_checks",
    "escalation_policies",
    "database",
    "performance",
    "security",
    "logging",
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENCRYPTION_ALGORITHMS = ("AES-256-GCM",)  # the one this system implements
DEFAULT_CHECK_INTERVAL = 60
DEFAULT_CHECK_TIMEOUT = 10

# Settings sections: YAML key -> (GlobalSettings column, validator). Both metrics and
# database name a retention_days; there is one retention column, so they must agree.
SETTINGS_COLUMNS: dict[str, dict[str, tuple[str, Any]]] = {
    "global": {
        "organization": ("organization", text(200)),
        "project": ("project", text(200)),
        "environment": ("environment", text(100)),
    },
    "metrics": {
        "collection_interval": ("collection_interval", positive),
        "retention_days": ("retention_days", positive),
        "prometheus_port": ("prometheus_port", optional(port)),
    },
    "alerting": {
        "evaluation_interval": ("evaluation_interval", positive),
        "notification_timeout": ("notification_timeout", positive),
        "max_retries": ("max_retries", non_negative),
    },
    "database": {
        "retention_days": ("retention_days", positive),
        "cleanup_interval": ("cleanup_interval", positive),
        "batch_size": ("batch_size", positive),
    },
    "logging": {"level": ("log_level", one_of(LOG_LEVELS))},
}
# Keys of the logging section kept in GlobalSettings.extra (nothing reads them yet).
LOGGING_EXTRA = {"detailed_logging": Field(boolean), "verbose_output": Field(boolean)}
# Sections stored whole in GlobalSettings.extra, so export writes them back.
EXTRA_SECTIONS = ("performance", "logging", "security")

SECURITY_FIELDS = {
    "authentication": Field(as_is),
    "authorization": Field(as_is),
    "encryption": Field(as_is),
}
AUTHENTICATION_FIELDS = {
    "enabled": Field(boolean),
    "method": Field(text(50)),
    "api_keys": Field(list_of(secret(text(200)))),
}
AUTHORIZATION_FIELDS = {
    "enabled": Field(boolean),
    "roles": Field(as_is),
}
ENCRYPTION_FIELDS = {
    "enabled": Field(boolean),
    "algorithm": Field(one_of(ENCRYPTION_ALGORITHMS)),
    "key_rotation_days": Field(positive),
}

TARGET_FIELDS = {
    "name": Field(text(200, required=True), required=True),
    "type": Field(one_of(TargetKind.values), default=TargetKind.SERVICE.value),
    "endpoint": Field(text(500), default=""),
    "check_interval": Field(positive, default=60),
    "timeout": Field(positive, default=10),
    "labels": Field(mapping_of(text(200)), default=dict),
    "parent": Field(optional(key_name), default=None),
    "enabled": Field(boolean, default=True),
}


def alert_expr(value: Any) -> str:
    """A rule's PromQL `expr`: empty, or an expression the alert engine can evaluate."""
    value = text()(value)
    problem = validate_expr(value) if value.strip() else None
    if problem:
        raise Invalid(f"is not a usable alert expression: {problem}")
    return value


RULE_FIELDS = {
    "name": Field(text(200, required=True), required=True),
    "description": Field(text(), default=""),
    "metric_query": Field(metric_name),  # required unless the rule has an expr (_read_rules)
    "threshold": Field(number, required=True),
    "comparison": Field(one_of(Comparison.values), required=True),
    "severity": Field(one_of(Severity.values), default=Severity.MEDIUM.value),
    "duration": Field(non_negative, default=0),
    "notification_channels": Field(list_of(key_name, unique=True), default=list),
    "enabled": Field(boolean, default=True),
    "matchers": Field(mapping_of(text(500)), default=dict),
    "labels": Field(mapping_of(text(500)), default=dict),
    "escalation_policy": Field(optional(key_name), default=None),
    "resolve_after": Field(optional(non_negative), default=None),
    "evaluation_interval": Field(optional(positive), default=None),
    "expr": Field(alert_expr, default=""),
}
CHECK_FIELDS = {
    "name": Field(text(200, required=True), required=True),
    "check_type": Field(one_of(CheckKind.values), required=True),
    "target": Field(optional(key_name), default=None),
    "config": Field(mapping_of(json_value), default=dict),
    "interval": Field(optional(positive), default=None),
    "timeout": Field(optional(positive), default=None),
    "enabled": Field(boolean, default=True),
    "failure_threshold": Field(positive, default=1),
    "success_threshold": Field(positive, default=1),
    "period": Field(positive, default=60),
    "grace": Field(positive, default=60),
}
POLICY_FIELDS = {
    "name": Field(text(200, required=True), required=True),
    "severity": Field(optional(one_of(Severity.values)), default=None),
    "steps": Field(as_is, required=True),
    "repeat": Field(boolean, default=False),
    "enabled": Field(boolean, default=True),
}
STEP_FIELDS = {
    "after_minutes": Field(non_negative, required=True),
    "notification_channels": Field(list_of(key_name, unique=True), required=True),
}


@dataclass(frozen=True)
class TargetFacts:
    """What a check needs to know of its target."""

    endpoint: str
    check_interval: int
    timeout: int
    parent: str | None = None


@dataclass(frozen=True)
class KnownKeys:
    """What the database already holds, which the file may refer to without defining."""

    targets: Mapping[str, TargetFacts] = field(default_factory=dict)
    channels: frozenset[str] = frozenset()
    policies: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a keyed section, as model field values. Foreign keys and
    many-to-many fields hold the related objects' keys."""

    section: str
    key: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class ChannelSpec(ObjectSpec):
    secrets: Mapping[str, Any]  # may hold MASK: keep the stored value


@dataclass(frozen=True)
class StepSpec:
    after_minutes: int
    channels: tuple[str, ...]


@dataclass(frozen=True)
class PolicySpec(ObjectSpec):
    steps: tuple[StepSpec, ...]


@dataclass(frozen=True)
class ApiKeySpec:
    index: int
    plain: str


@dataclass(frozen=True)
class SettingsSpec:
    columns: Mapping[str, Any]  # GlobalSettings columns of the sections present
    extra: Mapping[str, Any]  # GlobalSettings.extra entries of the sections present; None removes


@dataclass(frozen=True)
class ConfigSpec:
    settings: SettingsSpec | None
    channels: tuple[ChannelSpec, ...] = ()
    targets: tuple[ObjectSpec, ...] = ()  # parents before their children
    policies: tuple[PolicySpec, ...] = ()
    rules: tuple[ObjectSpec, ...] = ()
    checks: tuple[ObjectSpec, ...] = ()
    api_keys: tuple[ApiKeySpec, ...] = ()
    warnings: tuple[str, ...] = ()


def default_channel_name(key: str, kind: str) -> str:
    return ChannelKind(kind).label if key == kind else key


def check_timing(
    interval: int | None, timeout: int | None, config: Mapping[str, Any], target: TargetFacts | None
) -> tuple[int, int]:
    """Decide a check's interval and timeout: its own when given; else the interval of its
    target (the original format puts check_interval on targets) and the timeout of its
    config (where the original puts a custom command's) or of its target; else 60 s / 10 s."""
    config_timeout = config.get("timeout")
    if isinstance(config_timeout, bool) or not isinstance(config_timeout, int) or config_timeout < 1:
        config_timeout = None
    resolved_interval = interval or (target.check_interval if target else DEFAULT_CHECK_INTERVAL)
    resolved_timeout = timeout or config_timeout or (target.timeout if target else DEFAULT_CHECK_TIMEOUT)
    return resolved_interval, resolved_timeout


class _Reader:
    """Walks a document once, collecting problems and warnings."""

    def __init__(self, known: KnownKeys):
        self.known = known
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def section(self, document: dict, name: str) -> dict[str, Any] | None:
        """A keyed section's entries with valid keys; None when the section is absent."""
        if name not in document:
            return None
        value = document[name]
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(name, f"is {describe(value)}, not a mapping")
            return {}
        return value

    def keyed(self, document: dict, name: str) -> dict[str, Any]:
        entries = self.section(document, name) or {}
        valid = {}
        for key, value in entries.items():
            try:
                key_name(key)
            except Invalid as exc:
                self.problem(name, exc.message)
                continue
            valid[key] = value
        return valid


def parse_config(document: Any, known: KnownKeys | None = None) -> ConfigSpec:
    """Validate a loaded configuration document as a whole; the ConfigSpec to import, or
    ConfigError with every problem found."""
    known = known or KnownKeys()
    if document is None:
        raise ConfigError([Problem("", "the file is empty")])
    if not isinstance(document, dict):
        raise ConfigError(
            [Problem("", f"the file must be a mapping of sections ({', '.join(SECTIONS)}), not {describe(document)}")]
        )
    reader = _Reader(known)
    for name in document:
        if name not in SECTIONS:
            reader.problem(str(name), f"unknown section (known: {', '.join(SECTIONS)})")

    settings, api_keys = _read_settings(reader, document)
    channels = _read_channels(reader, document)
    channel_keys = known.channels | {c.key for c in channels}
    targets = _read_targets(reader, document)
    target_facts = {**known.targets, **{t.key: _facts(t) for t in targets}}
    targets = _check_parents(reader, targets, target_facts)
    policies = _read_policies(reader, document, channel_keys)
    policy_keys = known.policies | {p.key for p in policies}
    rules = _read_rules(reader, document, channel_keys, policy_keys)
    checks = _read_checks(reader, document, target_facts)
    if reader.problems:
        raise ConfigError(reader.problems)
    return ConfigSpec(
        settings=settings,
        channels=tuple(channels),
        targets=tuple(targets),
        policies=tuple(policies),
        rules=tuple(rules),
        checks=tuple(checks),
        api_keys=tuple(api_keys),
        warnings=tuple(reader.warnings),
    )


def _model_default(column: str) -> Any:
    return GlobalSettings._meta.get_field(column).get_default()


def _read_settings(reader: _Reader, document: dict) -> tuple[SettingsSpec | None, list[ApiKeySpec]]:
    columns: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    retention: dict[str, int] = {}
    present = [name for name in (*SETTINGS_COLUMNS, *EXTRA_SECTIONS) if name in document]
    for section, table in SETTINGS_COLUMNS.items():
        data = reader.section(document, section)
        if data is None:
            continue
        fields = {yaml_key: Field(validator) for yaml_key, (_, validator) in table.items()}
        if section == "logging":
            fields.update(LOGGING_EXTRA)
        values = read_fields(data, fields, section, reader.problems, fill_defaults=False) or {}
        for yaml_key, (column, _) in table.items():
            if column == "retention_days":
                if yaml_key in values:
                    retention[section] = values[yaml_key]
                continue
            columns[column] = values.get(yaml_key, _model_default(column))
        if section == "logging":
            extra["logging"] = {k: values[k] for k in LOGGING_EXTRA if k in values}
    if len(set(retention.values())) > 1:
        reader.problem(
            "database.retention_days",
            f"{retention['database']} differs from metrics.retention_days ({retention['metrics']}); "
            "both set the one retention period",
        )
    if retention:
        columns["retention_days"] = next(iter(retention.values()))
    elif "metrics" in document or "database" in document:
        columns["retention_days"] = _model_default("retention_days")

    if "performance" in document:
        performance = reader.section(document, "performance")
        try:
            extra["performance"] = mapping_of(json_value)(performance)
        except Invalid as exc:
            reader.problem("performance" + exc.where, exc.message)
    api_keys: list[ApiKeySpec] = []
    if "security" in document:
        extra["security"], api_keys = _read_security(reader, reader.section(document, "security"))
    if not present:
        return None, api_keys
    return SettingsSpec(columns=columns, extra={k: v or None for k, v in extra.items()}), api_keys


def _read_security(reader: _Reader, data: dict) -> tuple[dict[str, Any], list[ApiKeySpec]]:
    security = read_fields(data, SECURITY_FIELDS, "security", reader.problems, fill_defaults=False) or {}
    stored: dict[str, Any] = {}
    api_keys: list[ApiKeySpec] = []
    if "authentication" in security:
        auth = read_fields(
            security["authentication"] or {}, AUTHENTICATION_FIELDS, "security.authentication", reader.problems
        )
        auth = auth or {}
        for index, plain in enumerate(auth.pop("api_keys", None) or []):
            path = f"security.authentication.api_keys[{index}]"
            if plain == MASK:  # an exported key: only its hash is stored, so keep it
                continue
            if len(plain) < 16:
                reader.problem(path, "an API key needs at least 16 characters")
            elif any(plain == earlier.plain for earlier in api_keys):
                reader.problem(path, "this key is listed twice")
            api_keys.append(ApiKeySpec(index=index, plain=plain))
        stored["authentication"] = auth
    if "authorization" in security:
        authz = read_fields(
            security["authorization"] or {}, AUTHORIZATION_FIELDS, "security.authorization", reader.problems
        )
        authz = authz or {}
        if "roles" in authz:
            authz["roles"] = _read_roles(reader, authz["roles"])
        stored["authorization"] = authz
    if "encryption" in security:
        stored["encryption"] = (
            read_fields(security["encryption"] or {}, ENCRYPTION_FIELDS, "security.encryption", reader.problems) or {}
        )
    return {name: value for name, value in stored.items() if value}, api_keys


def _read_roles(reader: _Reader, roles: Any) -> dict[str, list[str]]:
    """Role definitions are stored as written: the three groups and their permissions
    exist already (roles.py); the names must be among them."""
    path = "security.authorization.roles"
    if not isinstance(roles, dict):
        reader.problem(path, f"is {describe(roles)}, not a mapping of roles to permission names")
        return {}
    cleaned = {}
    for role, permissions in roles.items():
        if role not in Role.values:
            reader.problem(join(path, role), f"{role!r} is not one of {' '.join(Role.values)}")
            continue
        try:
            cleaned[role] = list_of(text(100, required=True), unique=True)(permissions)
        except Invalid as exc:
            reader.problem(join(path, role) + exc.where, exc.message)
    return cleaned


def _read_channels(reader: _Reader, document: dict) -> list[ChannelSpec]:
    channels = []
    for key, data in reader.keyed(document, "notifications").items():
        path = f"notifications.{key}"
        if not isinstance(data, dict):
            reader.problem(path, f"is {describe(data)}, not a mapping")
            continue
        kind = data.get("kind", key)
        if kind not in ChannelKind.values:
            where = "kind" if "kind" in data else ""
            reader.problem(
                join(path, where) if where else path,
                f"{kind!r} is not a channel kind ({' '.join(ChannelKind.values)}); name the kind with `kind:`",
            )
            continue
        values = read_fields(data, {**CHANNEL_COMMON_FIELDS, **CHANNEL_FIELDS[kind]}, path, reader.problems)
        if values is None:
            continue
        common = {name: values.pop(name) for name in CHANNEL_COMMON_FIELDS if name in values}
        common.pop("kind", None)
        reader.warnings.extend(channel_warnings(path, values))
        config, secrets = split_channel_settings(kind, values)
        channels.append(
            ChannelSpec(
                section="notifications",
                key=key,
                fields={
                    "name": common.get("name") or default_channel_name(key, kind),
                    "kind": kind,
                    "enabled": common["enabled"],
                    "config": config,
                    "rate_limit_per_minute": common["rate_limit_per_minute"],
                    "template": common["template"],
                },
                secrets=secrets,
            )
        )
    return channels


def _read_targets(reader: _Reader, document: dict) -> list[ObjectSpec]:
    targets = []
    for key, data in reader.keyed(document, "monitoring_targets").items():
        values = read_fields(data, TARGET_FIELDS, f"monitoring_targets.{key}", reader.problems)
        if values is None:
            continue
        values["kind"] = values.pop("type")
        targets.append(ObjectSpec(section="monitoring_targets", key=key, fields=values))
    return targets


def _facts(target: ObjectSpec) -> TargetFacts:
    f = target.fields
    return TargetFacts(f["endpoint"], f["check_interval"], f["timeout"], f["parent"])


def _check_parents(reader: _Reader, targets: list[ObjectSpec], facts: Mapping[str, TargetFacts]) -> list[ObjectSpec]:
    """Refuse unknown parents and dependency loops; order parents before children."""
    by_key = {t.key: t for t in targets}
    ordered: list[ObjectSpec] = []
    placed: set[str] = set()
    for target in targets:
        parent = target.fields["parent"]
        path = f"monitoring_targets.{target.key}.parent"
        if parent is None:
            continue
        if parent not in facts:
            reader.problem(path, f"{parent!r} is not a monitoring target in the file or the database")
            continue
        chain = [target.key]
        ancestor: str | None = parent
        while ancestor is not None and ancestor in facts:
            if ancestor in chain:
                loop = " -> ".join([*chain, ancestor])
                reader.problem(path, f"{parent!r} makes a dependency loop ({loop})")
                break
            chain.append(ancestor)
            ancestor = facts[ancestor].parent

    def place(target: ObjectSpec, seen: tuple[str, ...] = ()) -> None:
        if target.key in placed or target.key in seen:
            return
        parent = by_key.get(target.fields["parent"] or "")
        if parent is not None:
            place(parent, (*seen, target.key))
        placed.add(target.key)
        ordered.append(target)

    for target in targets:
        place(target)
    return ordered


def _read_policies(reader: _Reader, document: dict, channel_keys: frozenset[str]) -> list[PolicySpec]:
    policies = []
    for key, data in reader.keyed(document, "escalation_policies").items():
        path = f"escalation_policies.{key}"
        values = read_fields(data, POLICY_FIELDS, path, reader.problems)
        if values is None:
            continue
        raw_steps = values.pop("steps", None)
        steps: list[StepSpec] = []
        if raw_steps is not None and not isinstance(raw_steps, list):
            reader.problem(f"{path}.steps", f"is {describe(raw_steps)}, not a list")
            raw_steps = []
        elif raw_steps == []:
            reader.problem(f"{path}.steps", "a policy needs at least one step")
        for index, raw in enumerate(raw_steps or []):
            step_path = f"{path}.steps[{index}]"
            step = read_fields(raw, STEP_FIELDS, step_path, reader.problems)
            if not step or "after_minutes" not in step or "notification_channels" not in step:
                continue
            _check_channels(reader, step["notification_channels"], f"{step_path}.notification_channels", channel_keys)
            if steps and step["after_minutes"] < steps[-1].after_minutes:
                reader.problem(
                    f"{step_path}.after_minutes",
                    f"{step['after_minutes']} comes before the previous step's {steps[-1].after_minutes}",
                )
            steps.append(StepSpec(step["after_minutes"], tuple(step["notification_channels"])))
        values["severity"] = values["severity"] or ""
        policies.append(PolicySpec(section="escalation_policies", key=key, fields=values, steps=tuple(steps)))
    return policies


def _check_channels(reader: _Reader, keys: list[str], path: str, channel_keys: frozenset[str]) -> None:
    for index, channel in enumerate(keys):
        if channel not in channel_keys:
            reader.problem(f"{path}[{index}]", f"{channel!r} is not a notification channel in the file or the database")


def _read_rules(
    reader: _Reader, document: dict, channel_keys: frozenset[str], policy_keys: frozenset[str]
) -> list[ObjectSpec]:
    rules = []
    for key, data in reader.keyed(document, "alert_rules").items():
        path = f"alert_rules.{key}"
        values = read_fields(data, RULE_FIELDS, path, reader.problems)
        if values is None:
            continue
        if "notification_channels" in values:
            _check_channels(reader, values["notification_channels"], f"{path}.notification_channels", channel_keys)
        policy = values.get("escalation_policy")
        if policy is not None and policy not in policy_keys:
            reader.problem(
                f"{path}.escalation_policy", f"{policy!r} is not an escalation policy in the file or the database"
            )
        if "metric_query" not in data and not values.get("expr"):
            reader.problem(f"{path}.metric_query", "is required (unless the rule has an expr)")
        values["metric"] = values.pop("metric_query", "")
        values["channels"] = tuple(values.pop("notification_channels", ()))
        rules.append(ObjectSpec(section="alert_rules", key=key, fields=values))
    return rules


def _read_checks(reader: _Reader, document: dict, targets: Mapping[str, TargetFacts]) -> list[ObjectSpec]:
    checks = []
    for key, data in reader.keyed(document, "health_checks").items():
        path = f"health_checks.{key}"
        values = read_fields(data, CHECK_FIELDS, path, reader.problems)
        if values is None or "check_type" not in values:
            continue
        target_key = values.get("target")
        target = targets.get(target_key) if target_key else None
        if target_key and target is None:
            reader.problem(f"{path}.target", f"{target_key!r} is not a monitoring target in the file or the database")
            continue
        config = values.get("config", {})
        kind = values.pop("check_type")
        # A check the checkers cannot run is imported switched off with its reason, so the
        # rest of the file still applies and the admin shows what to fix.
        errors = check_config_errors(kind, config, endpoint=target.endpoint if target else "")
        if errors:
            reason = "; ".join(errors)
            reader.warnings.append(f"{path}: imported disabled: {reason}")
            values["enabled"] = False
        values["invalid_reason"] = "; ".join(errors)
        values["interval"], values["timeout"] = check_timing(values["interval"], values["timeout"], config, target)
        values["kind"] = kind
        checks.append(ObjectSpec(section="health_checks", key=key, fields=values))
    return checks
