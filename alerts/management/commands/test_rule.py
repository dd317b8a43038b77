"""`manage.py test_rule`: replay a rule through the alert engine and print its timeline as JSON,
from a scenario file (--scenario) or over stored history (--rule-id)."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from alerts.engine import RuleSpecError
from alerts.evaluation import default_evaluation_interval, spec_for_rule
from alerts.models import AlertRule
from alerts.replay import (
    ScenarioError,
    compare_with_expected,
    parse_scenario,
    replay_scenario,
    replay_stored_history,
    timeline_document,
)
from monitoring.promql import PromQLError

EXIT_DIFFERS = 1
EXIT_MALFORMED = 2


class Command(BaseCommand):
    help = (
        "Replay an alert rule and print the firing timeline as JSON. --scenario FILE exits 1 when the "
        "replay differs from the file's `expected` (differences on stderr) and 2 for a malformed file."
    )
    requires_system_checks = []  # a replay needs no URL or admin checks; it starts faster without

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--scenario", metavar="FILE", help="A scenario file (alert-scenario-format.md).")
        source.add_argument("--rule-id", type=int, help="Replay a stored rule over stored samples.")
        parser.add_argument("--hours", type=float, default=24.0, help="With --rule-id: how far back (default 24).")
        parser.add_argument(
            "--until",
            metavar="TIME",
            help="With --rule-id: replay up to this ISO 8601 time (default now), e.g. 2026-11-28T06:00:00Z "
            "for last night's incident.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["scenario"]:
            self.replay_scenario_file(Path(options["scenario"]))
        else:
            self.replay_stored_rule(options["rule_id"], options["hours"], parse_until(options["until"]))

    def replay_scenario_file(self, path: Path) -> None:
        try:
            document = json.loads(path.read_text())
        except OSError as exc:
            raise CommandError(f"{path}: cannot read: {exc.strerror or exc}", returncode=EXIT_MALFORMED) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: $: not valid JSON: {exc}", returncode=EXIT_MALFORMED) from None
        try:
            scenario = parse_scenario(document)
        except ScenarioError as exc:
            raise CommandError(f"{path}: {exc.path}: {exc.reason}", returncode=EXIT_MALFORMED) from None
        steps = replay_scenario(scenario)
        self.stdout.write(json.dumps(timeline_document(steps)))
        differences = compare_with_expected(scenario, steps)
        if differences:
            for line in differences:
                self.stderr.write(line)
            raise CommandError(
                f"{path}: the replay differs from `expected` in {len(differences)} place(s)", returncode=EXIT_DIFFERS
            )

    def replay_stored_rule(self, rule_id: int, hours: float, until: datetime | None) -> None:
        rule = AlertRule.objects.filter(pk=rule_id).first()
        if rule is None:
            raise CommandError(f"no alert rule with id {rule_id}")
        if hours <= 0:
            raise CommandError("--hours must be positive")
        try:
            spec = spec_for_rule(rule)
        except RuleSpecError as exc:
            raise CommandError(f"rule {rule_id} cannot be evaluated: {exc}") from None
        end = (until or timezone.now()).replace(microsecond=0)
        interval = spec.evaluation_interval_s or default_evaluation_interval()
        try:
            steps = replay_stored_history(spec, start=end - timedelta(hours=hours), end=end, interval_s=interval)
        except PromQLError as exc:
            raise CommandError(f"rule {rule_id}: its expression cannot be evaluated over stored data: {exc}") from None
        document = {
            "rule": {"id": rule.id, "key": rule.key, "name": rule.name},
            "from": (end - timedelta(hours=hours)).isoformat(),
            "to": end.isoformat(),
            "eval_interval_s": interval,
            **timeline_document(steps),
        }
        self.stdout.write(json.dumps(document))


def parse_until(raw: str | None) -> datetime | None:
    """--until as an aware time (UTC when it names no offset); exit 2 when it is not a time."""
    if raw is None:
        return None
    try:
        parsed = parse_datetime(raw)
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(
            f"--until {raw!r} is not an ISO 8601 time (e.g. 2026-11-28T06:00:00Z)", returncode=EXIT_MALFORMED
        )
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)
