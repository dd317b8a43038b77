"""Writing an import plan: creates and updates exactly what the plan lists, in the order
references need (channels and targets before the rules, policies and checks naming them).
The caller holds the transaction."""

from django.contrib.auth.models import Group, User
from django.db import models

from alerts.models import EscalationPolicy, EscalationStep
from monitoring.apikeys import create_api_key
from monitoring.choices import Role
from monitoring.models import GlobalSettings
from notifications.models import NotificationChannel
from notifications.secrets import set_channel_secrets

from .plan import BINDINGS, CONFIG_API_USER, Action, Change, Plan, merged_extra
from .schema import ObjectSpec, PolicySpec, SettingsSpec


def apply_plan(plan: Plan) -> None:
    """Write `plan` to the database; an unchanged object is not saved at all, so its
    updated_at stays."""
    spec = plan.spec
    if spec.settings is not None:
        _apply_settings(spec.settings, plan.change("settings", "global"))
    for channel in spec.channels:
        change = plan.change("notifications", channel.key)
        instance = _apply_object(channel, change)
        if instance is not None and (change.action == Action.CREATE or change.changed("secrets")):
            _store_secrets(instance, plan.secrets[channel.key])
    for target in spec.targets:  # parents come first
        _apply_object(target, plan.change("monitoring_targets", target.key))
    for policy in spec.policies:
        change = plan.change("escalation_policies", policy.key)
        instance = _apply_object(policy, change)
        if instance is not None and (change.action == Action.CREATE or change.changed("steps")):
            _replace_steps(instance, policy)
    for rule in spec.rules:
        _apply_object(rule, plan.change("alert_rules", rule.key))
    for check in spec.checks:
        _apply_object(check, plan.change("health_checks", check.key))
    _apply_api_keys(plan)


def _apply_settings(spec: SettingsSpec, change: Change) -> None:
    if change.action == Action.UNCHANGED:
        return
    instance = GlobalSettings.objects.filter(pk=1).first() or GlobalSettings()
    for name, value in spec.columns.items():
        setattr(instance, name, value)
    instance.extra = merged_extra(instance.extra, spec)
    instance.save()


def _apply_object(spec: ObjectSpec, change: Change) -> models.Model | None:
    """Create or update one keyed object; None when it is unchanged."""
    if change.action == Action.UNCHANGED:
        return None
    binding = BINDINGS[spec.section]
    if change.action == Action.CREATE:
        instance = binding.model(**{binding.key_field: spec.key})
        names = list(spec.fields)
    else:
        instance = binding.model.objects.get(**{binding.key_field: spec.key})
        names = [f.field for f in change.fields if f.field in spec.fields]
    columns = [name for name in names if name not in binding.many_to_many]
    for name in columns:
        value = spec.fields[name]
        if name in binding.foreign_keys and value is not None:
            related_model, related_key = binding.foreign_keys[name]
            value = related_model.objects.get(**{related_key: value})
        setattr(instance, name, value)
    if change.action == Action.CREATE:
        instance.save()
    else:
        instance.save(update_fields=[*columns, "updated_at"])
    for name in names:
        if name in binding.many_to_many:
            related_model, related_key = binding.many_to_many[name]
            getattr(instance, name).set(related_model.objects.filter(**{f"{related_key}__in": spec.fields[name]}))
    return instance


def _store_secrets(channel: NotificationChannel, secrets: dict) -> None:
    # After the row has its id: the encryption is bound to it.
    set_channel_secrets(channel, secrets)
    channel.save(update_fields=["secrets", "updated_at"])


def _replace_steps(policy: EscalationPolicy, spec: PolicySpec) -> None:
    policy.steps.all().delete()
    for order, step_spec in enumerate(spec.steps):
        step = EscalationStep.objects.create(policy=policy, order=order, after_minutes=step_spec.after_minutes)
        step.channels.set(NotificationChannel.objects.filter(key__in=step_spec.channels))


def _apply_api_keys(plan: Plan) -> None:
    to_create = [key for key in plan.spec.api_keys if plan.change("api_keys", str(key.index)).action == Action.CREATE]
    if not to_create:
        return
    user = User.objects.filter(username=CONFIG_API_USER).first()
    if user is None:
        user = User.objects.create_user(username=CONFIG_API_USER)  # no password: it cannot log in
        user.groups.add(Group.objects.get(name=Role.OPERATOR.value))
    for key in to_create:
        create_api_key(user=user, name=f"config file key {key.index + 1}", plain=key.plain)
