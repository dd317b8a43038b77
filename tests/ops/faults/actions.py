"""What the fault tests do inside the system, run as `python -m tests.ops.faults.actions
<action> '<json arguments>'` in a Django process of the stack's environment (its database and
Redis): configure channels, rules and intervals, ingest samples, evaluate as another
evaluator would, and read the outbox and the alerts back. Prints its result as JSON."""

import json
import sys
from typing import Any

import django


def configure(
    *, settings: dict[str, Any], channels: list[dict[str, Any]], rules: list[dict[str, Any]], policies=()
) -> dict[str, Any]:
    """Global settings (short intervals) first, then channels, escalation policies and rules;
    the periodic tasks take the new intervals from the global settings' save."""
    from alerts.models import AlertRule, EscalationPolicy, EscalationStep
    from monitoring.models import GlobalSettings
    from monitoring.schedule import sync_periodic_tasks
    from notifications.models import NotificationChannel
    from notifications.secrets import set_channel_secrets, split_channel_settings

    stored = GlobalSettings.load()
    for name, value in settings.items():
        setattr(stored, name, value)
    stored.save()
    sync_periodic_tasks()

    by_key = {}
    for spec in channels:
        spec = dict(spec)
        key, kind = spec.pop("key"), spec.pop("kind")
        rate = spec.pop("rate_limit_per_minute", None)
        config, secrets = split_channel_settings(kind, spec)
        channel = NotificationChannel.objects.create(
            name=key, key=key, kind=kind, config=config, rate_limit_per_minute=rate
        )
        if secrets:
            set_channel_secrets(channel, secrets)
            channel.save(update_fields=["secrets"])
        by_key[key] = channel
    policy_ids = {}
    for spec in policies:
        policy = EscalationPolicy.objects.create(
            name=spec["key"], key=spec["key"], severity=spec.get("severity", ""), repeat=spec.get("repeat", False)
        )
        for order, (after, keys) in enumerate(spec["steps"]):
            step = EscalationStep.objects.create(policy=policy, order=order, after_minutes=after)
            step.channels.set([by_key[k] for k in keys])
        policy_ids[spec["key"]] = policy
    rule_ids = {}
    for spec in rules:
        rule = AlertRule.objects.create(
            name=spec["key"],
            key=spec["key"],
            metric=spec["metric"],
            comparison=spec.get("comparison", ">"),
            threshold=spec["threshold"],
            duration=spec.get("duration", 0),
            severity=spec.get("severity", "high"),
            escalation_policy=policy_ids.get(spec.get("policy")),
        )
        rule.channels.set([by_key[k] for k in spec.get("channels", ())])
        rule_ids[spec["key"]] = rule.pk
    return {"channels": {k: c.pk for k, c in by_key.items()}, "rules": rule_ids}


def ingest(*, metric: str, first: int, count: int, value: float) -> int:
    """One sample of `value` for each of `count` series of `metric` (label device=d-<n>),
    through the ingestion path (which tells the alert engine, or logs that it cannot)."""
    from monitoring.ingest import SampleIn, ingest_samples

    samples = [SampleIn(metric, {"device": f"d-{n:04d}"}, value) for n in range(first, first + count)]
    return ingest_samples(samples).accepted


def evaluate() -> str:
    """One evaluation round of every rule, as a second evaluator (an on-ingest task, a
    replica) would run it."""
    from django.utils import timezone

    from alerts.evaluation import evaluate_rules

    return evaluate_rules(now=timezone.now()).line()


def api_key() -> str:
    """An operator's API key (the push API needs one)."""
    from django.contrib.auth.models import Group, User

    from monitoring.apikeys import create_api_key
    from monitoring.choices import Role

    user = User.objects.create_user(username="pusher", password="fault tests only")
    user.groups.add(Group.objects.get(name=Role.OPERATOR.value))
    return create_api_key(user=user, name="fault-tests").plain


def main(argv: list[str]) -> None:
    django.setup()
    name, arguments = argv[1], json.loads(argv[2]) if len(argv) > 2 else {}
    actions = {"configure": configure, "ingest": ingest, "evaluate": evaluate, "api_key": api_key}
    print(json.dumps(actions[name](**arguments), default=str))


if __name__ == "__main__":
    main(sys.argv)
