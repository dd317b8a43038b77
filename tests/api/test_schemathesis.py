"""Schemathesis over the schema at /api/schema/: generated requests (valid and invalid) to
every operation, as admin, in-process through the WSGI application. No 5xx, no answer
that breaks the schema, no status code the schema does not document."""

import json
import os
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from alerts.models import Alert, AlertRule, EscalationPolicy, EscalationStep, Silence
from healthchecks.models import HealthCheck as Check
from monitoring.apikeys import create_api_key
from monitoring.models import MonitoringTarget
from notifications.models import NotificationChannel

# What the issue asks: no 5xx, no answer outside the schema, no undocumented status. Not
# negative_data_rejection: DRF takes a number for a text field as its text and ignores
# unknown body fields, which is lenient, not broken (the generated invalid cases still run
# through every check below).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# About 17 cases per operation (valid and invalid ones), over 60-odd operations: more than
# 1,000 in all. The coverage phase (hundreds of boundary cases per operation) would take
# minutes, so only the fuzzing phase runs. Derandomized so that `make test` is repeatable;
# API_FUZZ_RANDOM=1 explores new cases, API_FUZZ_EXAMPLES=200 explores longer.
EXAMPLES_PER_OPERATION = int(os.environ.get("API_FUZZ_EXAMPLES", "17"))
CONFIG = schemathesis.Config.from_dict(
    {"phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}}, "generation": {"mode": "all"}}
)
RANDOM = os.environ.get("API_FUZZ_RANDOM") == "1"
CASES_RUN: list[str] = []


@pytest.fixture
def wsgi_app():
    """Django's WSGI application inside the test's transaction: the handler would close the
    connection (and with it the transaction) after each request, as the test client
    prevents too."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(users) -> dict[str, Any]:
    """One object of each resource, so that generated requests also reach existing ones."""
    channel = NotificationChannel.objects.create(
        key="ops-email", name="Ops", kind="email", config={"smtp_server": "127.0.0.1", "recipients": []}
    )
    target = MonitoringTarget.objects.create(slug="gateway-1", name="Gateway 1", kind="device")
    policy = EscalationPolicy.objects.create(key="default", name="Default")
    EscalationStep.objects.create(policy=policy, order=0, after_minutes=0).channels.add(channel)
    rule = AlertRule.objects.create(key="cpu", name="CPU", metric="cpu_usage_percent", comparison=">", threshold=90)
    now = timezone.now()
    alert = Alert.objects.create(
        rule=rule, fingerprint="f" * 32, labels={"host": "a"}, severity="high", state="active", fired_at=now
    )
    silence = Silence.objects.create(rule=rule, ends_at=now + timezone.timedelta(hours=1))
    check = Check.objects.create(key="web", name="Web", kind="http", config={"url": "http://127.0.0.1:9/"})
    key = create_api_key(user=users["viewer"], name="device-7").api_key
    return {
        "/api/alerts/": alert.pk,
        "/api/alert-rules/": rule.pk,
        "/api/silences/": silence.pk,
        "/api/escalation-policies/": policy.pk,
        "/api/notification-channels/": channel.pk,
        "/api/health-checks/": check.pk,
        "/api/targets/": target.pk,
        "/api/api-keys/": key.pk,
    }


def served_schema() -> dict:
    """The document /api/schema/ serves, built at collection so that each operation is a
    test of its own (its own timeout, selectable with -k)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document))


schema = schemathesis.openapi.from_dict(served_schema(), config=CONFIG)


def _aim_at_existing(case, world: dict[str, Any]) -> None:
    """Half of the generated ids are swapped for an object that exists, so updates and
    deletes get past their 404 and their validation is fuzzed too."""
    for name in ("id", "target_id"):
        value = case.path_parameters.get(name) if case.path_parameters else None
        if not isinstance(value, int) or value % 2:
            continue
        for prefix, pk in world.items():
            if case.operation.path.startswith(prefix):
                case.path_parameters[name] = pk


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_keeps_its_schema_under_generated_input(case, world, api_keys, wsgi_app):
    _aim_at_existing(case, world)
    CASES_RUN.append(case.operation.label)
    case.call_and_validate(headers={"X-API-Key": api_keys["admin"]}, checks=CHECKS, app=wsgi_app)


def test_the_run_covered_every_operation_with_enough_cases():
    """Runs after the parametrized test above (same module, in file order)."""
    if not CASES_RUN:
        pytest.fail("the schemathesis run did not run (select the whole module)")
    operations = {path: methods for path, methods in schema.raw_schema["paths"].items()}
    assert len(set(CASES_RUN)) == sum(len(methods) for methods in operations.values()) >= 60
    assert len(CASES_RUN) >= 1000
