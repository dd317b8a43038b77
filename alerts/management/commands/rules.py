"""`manage.py rules list|silence`: the original CLI's rule commands."""

import math

from django.utils import timezone

from alerts.api.rules import AlertRuleSerializer, rules_for_listing
from alerts.api.silences import SilenceSerializer
from alerts.choices import Severity
from alerts.models import AlertRule
from alerts.silencing import MAX_SILENCE_HOURS, SilenceError, silence_rule
from monitoring.choices import AuditSource, Role
from monitoring.cli import Column, MonitoringCommand, failure, usage_error

SEVERITY_STYLES = {Severity.CRITICAL: "bold red", Severity.HIGH: "red", Severity.MEDIUM: "yellow", Severity.LOW: "cyan"}

COLUMNS = [
    Column("id", "ID", justify="right"),
    Column("key", "Key"),
    Column("name", "Name"),
    Column("condition", "Condition"),
    Column("severity", "Severity", style=SEVERITY_STYLES.get),
    Column("channels", "Channels"),
    Column("enabled", "Enabled", style=lambda on: None if on else "dim"),
    Column("silenced_until", "Silenced until"),
]


def hours(text: str) -> float:
    """argparse type: a number of hours above 0 and at most a year."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(text) from None
    if not math.isfinite(value) or value <= 0 or value > MAX_SILENCE_HOURS:
        raise ValueError(text)
    return value


hours.__name__ = f"duration (hours, more than 0 and at most {MAX_SILENCE_HOURS})"


def condition(rule: dict) -> str:
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted(rule["matchers"].items()))
    metric = f"{rule['metric']}{{{matchers}}}" if matchers else rule["metric"]
    wait = f" for {rule['duration']}s" if rule["duration"] else ""
    return f"{metric} {rule['comparison']} {rule['threshold']:g}{wait}"


class Command(MonitoringCommand):
    help = (
        "List alert rules and silence them.\n"
        "  manage.py rules list --format json\n"
        "  manage.py rules silence --rule-id 3 --duration 2 --comment 'planned outage'"
    )

    def add_arguments(self, parser) -> None:
        actions = self.add_actions(parser, "{list,silence}")

        listing = actions.add_parser(
            "list",
            help="List the alert rules.",
            description="List the alert rules.\n\n  manage.py rules list --format json",
        )
        listing.add_argument("--enabled", action="store_true", help="Only enabled rules.")
        self.add_format_argument(listing)

        silence = actions.add_parser(
            "silence",
            help="Silence a rule's alerts for a while (operator).",
            description="Hold back the notifications of a rule's alerts for a while (operator role); the alerts still"
            " change state.\n\n  manage.py rules silence --rule-id 3 --duration 2 --comment 'planned outage'",
        )
        silence.add_argument("--rule-id", required=True, metavar="ID", help="The rule's id (or key). E.g. --rule-id 3")
        silence.add_argument(
            "--duration", type=hours, required=True, metavar="HOURS", help="How long, in hours. E.g. --duration 1.5"
        )
        silence.add_argument("--comment", default="", help="Why. E.g. --comment 'firmware rollout'")
        self.add_user_argument(silence)
        self.add_format_argument(silence, ("table", "json"))

    def handle(self, *args, **options) -> None:
        if options["action"] == "list":
            self.list_rules(options)
        else:
            self.silence(options)

    def list_rules(self, options: dict) -> None:
        rules = rules_for_listing(timezone.now())
        if options["enabled"]:
            rules = rules.filter(enabled=True)
        rows = [{**row, "condition": condition(row)} for row in AlertRuleSerializer(rules, many=True).data]
        self.emit(rows, COLUMNS, options["format"], title="Alert rules", empty="No alert rules.")

    def silence(self, options: dict) -> None:
        user = self.acting_user(options["user"], Role.OPERATOR, "silence rules")
        ref = options["rule_id"]
        rule = AlertRule.objects.filter(pk=int(ref)).first() if ref.isdigit() else None
        rule = rule or AlertRule.objects.filter(key=ref).first()
        if rule is None:
            raise failure(f"There is no alert rule {ref!r}; `manage.py rules list` shows the ids and keys.")
        now = timezone.now()
        try:
            created = silence_rule(
                rule_id=rule.pk,
                duration_hours=options["duration"],
                user=user,
                comment=options["comment"],
                source=AuditSource.CLI,
                now=now,
            )
        except SilenceError as exc:
            raise usage_error(f"--duration: {exc}") from None
        if options["format"] == "json":
            self.emit_json(SilenceSerializer(created, context={"now": now}).data)
        else:
            until = timezone.localtime(created.ends_at).strftime("%Y-%m-%d %H:%M:%S %Z")
            self.stdout.write(f"Rule {rule.pk} ({rule.key}) silenced until {until} by {user.username}.")
