"""What every command of the original CLI shares: --help explains every option with an
example, --format json prints parseable JSON (also when the command then exits 1), and
errors exit 1 (failed or refused) or 2 (bad usage) with the reason and what to do."""

import argparse
import json

import pytest
from django.core.management import get_commands, load_command_class

from .conftest import run

pytestmark = pytest.mark.django_db

COMMANDS = ("status", "dashboard", "alerts", "rules", "targets", "health", "metrics", "notify", "report", "cleanup")
DJANGO_OPTIONS = {
    "--version",
    "--verbosity",
    "--settings",
    "--pythonpath",
    "--traceback",
    "--no-color",
    "--force-color",
    "--skip-checks",
    "--help",
}


def parsers(name: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """The command's parser and those of its actions (`alerts list`, `report performance`)."""
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.extend((f"{name} {sub}", subparser) for sub, subparser in action.choices.items())
    return found


@pytest.mark.parametrize("name", COMMANDS)
def test_help_explains_every_option_with_an_example(name):
    for label, parser in parsers(name):
        text = parser.format_help()
        assert f"manage.py {label}" in text, f"{label}: --help shows no example"
        for action in parser._actions:
            option = max(action.option_strings, key=len, default="")
            if option in DJANGO_OPTIONS or isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{label} {option or action.dest}: no help"


# A command whose system is not healthy still prints its JSON before exiting 1.
JSON_COMMANDS = [
    ("status",),
    ("dashboard", "--once"),
    ("alerts", "list"),
    ("rules", "list"),
    ("targets",),
    ("health",),
    ("metrics",),
    ("report", "alerts"),
    ("report", "performance"),
    ("cleanup", "--dry-run"),
]


@pytest.mark.parametrize("args", JSON_COMMANDS, ids=" ".join)
def test_format_json_is_parseable(world, args):
    outcome = run(*args, "--format", "json")

    assert outcome.code in (0, 1)
    assert json.loads(outcome.stdout) is not None


def test_json_outputs_agree_on_the_world(world):
    status = json.loads(run("status", "--format", "json").stdout)
    alerts = json.loads(run("alerts", "list", "--status", "firing", "--format", "json").stdout)
    health = json.loads(run("health", "--format", "json").stdout)
    targets = json.loads(run("targets", "--format", "json").stdout)

    assert status["active_alerts"] == len(alerts) == 1
    assert [a["rule_key"] for a in alerts] == ["service-down"]
    assert [(c["name"], c["status"]) for c in health] == [("API HTTP", "critical")]
    assert [(t["slug"], t["status"]) for t in targets] == [("api", "critical")]


ERRORS = [
    # (arguments, exit code, words the message must hold)
    (("alerts", "ack", "--alert-id", "999999"), 1, ["no alert 999999", "alerts list --status all"]),
    (("alerts", "resolve", "--alert-id", "999999"), 1, ["no alert 999999"]),
    (("alerts", "ack", "--alert-id", "firing", "--user", "viewer"), 1, ["viewer role", "operator role or higher"]),
    (("rules", "silence", "--rule-id", "high-cpu", "--duration", "0"), 2, ["--duration", "duration (hours"]),
    (("rules", "silence", "--rule-id", "high-cpu", "--duration", "two"), 2, ["--duration"]),
    (("rules", "silence", "--rule-id", "high-cpu", "--duration", "1", "--user", "viewer"), 1, ["viewer role"]),
    (("rules", "silence", "--rule-id", "nope", "--duration", "1"), 1, ["no alert rule 'nope'", "rules list"]),
    (("health", "--run", "--user", "viewer"), 1, ["viewer role", "run health checks"]),
    (("notify", "--user", "viewer"), 1, ["viewer role", "send test notifications"]),
    (("metrics", "--hours", "-1"), 2, ["--hours"]),
    (("report", "alerts", "--days", "0"), 2, ["--days"]),
    (("dashboard", "--interval", "0"), 2, ["--interval"]),
    (("cleanup", "--days", "0"), 2, ["--days"]),
    (("cleanup", "--user", "viewer"), 1, ["viewer role", "admin role"]),
    (("alerts", "ack", "--alert-id", "1", "--user", "nobody"), 2, ["no user 'nobody'", "--user"]),
]


@pytest.mark.parametrize("args, code, words", ERRORS, ids=[" ".join(e[0]) for e in ERRORS])
def test_errors_exit_with_the_reason_and_what_to_do(world, args, code, words):
    args = tuple(str(world["firing"].pk) if a == "firing" else a for a in args)

    outcome = run(*args)

    assert outcome.code == code
    for word in words:
        assert word in outcome.error


def test_acknowledging_a_resolved_alert_names_its_state(world):
    outcome = run("alerts", "ack", "--alert-id", str(world["early"].pk))

    assert outcome.code == 1
    assert f"alert {world['early'].pk} is resolved" in outcome.error
