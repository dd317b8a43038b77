"""A rule's PromQL `expr` is checked wherever rules are written (the admin form through
AlertRule.clean, the REST API, import_config): a syntax error or a construct outside the
supported subset is refused with a message naming it, on the `expr` field or key path."""

from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from alerts.models import AlertRule

pytestmark = pytest.mark.django_db

CONFIG = Path(__file__).resolve().parents[1] / "fixtures" / "monitoring-config.yaml"

# (expression, what the message must name)
REFUSED = [
    ("cpu_usage_percent >", "1:20: parse error: unexpected end of input"),
    ('label_replace(up, "a", "b", "c", "d")', 'function "label_replace" is not supported'),
    ("max_over_time(cpu_usage_percent[10m:1m])", 'subquery "[10m:1m]" is not supported'),
    ("cpu_usage_percent[5m]", "must return an instant vector or a scalar, not a range vector"),
]


def rule_form(**overrides: str) -> dict:
    data = {
        "name": "Hot",
        "key": "hot",
        "description": "",
        "enabled": "on",
        "metric": "cpu_usage_percent",
        "matchers": "{}",
        "comparison": ">",
        "threshold": "80",
        "duration": "0",
        "resolve_after": "",
        "expr": "",
        "severity": "high",
        "labels": "{}",
        "escalation_policy": "",
        "evaluation_interval": "",
    }
    return {**data, **overrides}


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "correct horse battery"))
    return client


@pytest.mark.parametrize(("expr", "named"), REFUSED)
def test_admin_form_shows_the_expression_error_on_the_expr_field(root, expr, named):
    response = root.post(reverse("admin:alerts_alertrule_add"), rule_form(expr=expr))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["expr"]
    assert named in errors["expr"][0]
    assert not AlertRule.objects.exists()


def test_admin_form_saves_a_valid_expression(root):
    response = root.post(
        reverse("admin:alerts_alertrule_add"), rule_form(expr="avg by (host) (cpu_usage_percent) > 80")
    )

    assert response.status_code == 302
    assert AlertRule.objects.get().expr == "avg by (host) (cpu_usage_percent) > 80"


@pytest.mark.parametrize(("expr", "named"), REFUSED)
def test_api_refuses_the_expression_naming_the_expr_field(client_for, users, expr, named):
    body = {"name": "Hot", "metric": "cpu_usage_percent", "comparison": ">", "threshold": 80, "expr": expr}

    response = client_for("admin").post("/api/alert-rules", body, format="json")

    assert response.status_code == 400, response.content
    details = response.json()["error"]["details"]
    assert list(details) == ["expr"]
    assert named in details["expr"][0]
    assert not AlertRule.objects.exists()


def test_api_writes_and_shows_a_valid_expression(client_for, users):
    body = {"name": "Hot", "metric": "cpu_usage_percent", "comparison": ">", "threshold": 80, "expr": "up == 0"}
    created = client_for("admin").post("/api/alert-rules", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["rule"]["expr"] == "up == 0"

    rule_id = created.json()["rule"]["id"]
    refused = client_for("admin").patch(f"/api/alert-rules/{rule_id}", {"expr": "up =="}, format="json")
    assert refused.status_code == 400
    assert "1:6: parse error" in refused.json()["error"]["details"]["expr"][0]
    assert AlertRule.objects.get().expr == "up == 0"  # the refused change left the row alone


@pytest.mark.parametrize(("expr", "named"), REFUSED)
def test_import_refuses_the_expression_with_its_key_path(tmp_path, expr, named):
    document = yaml.safe_load(CONFIG.read_text())
    document["alert_rules"]["high_cpu_usage"]["expr"] = expr
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    err = StringIO()

    with pytest.raises(CommandError) as exc:
        call_command("import_config", str(path), stdout=StringIO(), stderr=err)

    assert exc.value.returncode == 2
    lines = [line for line in err.getvalue().splitlines() if line.startswith("alert_rules.high_cpu_usage.expr: ")]
    assert len(lines) == 1, err.getvalue()
    assert "is not a usable alert expression" in lines[0] and named in lines[0]
    assert not AlertRule.objects.exists()


def test_import_takes_a_valid_expression(tmp_path):
    document = yaml.safe_load(CONFIG.read_text())
    document["alert_rules"]["high_cpu_usage"]["expr"] = "avg(cpu_usage_percent) > 80"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))

    call_command("import_config", str(path), stdout=StringIO(), stderr=StringIO())

    assert AlertRule.objects.get(key="high_cpu_usage").expr == "avg(cpu_usage_percent) > 80"


def test_api_rule_with_an_expression_needs_no_metric(client_for, users):
    body = {"name": "Down", "comparison": ">", "threshold": 0, "expr": "up == 0"}

    created = client_for("admin").post("/api/alert-rules", body, format="json")
    neither = client_for("admin").post("/api/alert-rules", {**body, "key": "down-2", "expr": ""}, format="json")

    assert created.status_code == 201, created.content
    assert (created.json()["rule"]["metric"], created.json()["warnings"]) == ("", [])
    assert neither.status_code == 400
    assert neither.json()["error"]["details"]["metric"] == ["This field is required."]
    rule_id = created.json()["rule"]["id"]
    emptied = client_for("admin").patch(f"/api/alert-rules/{rule_id}", {"expr": ""}, format="json")
    assert emptied.status_code == 400
    assert emptied.json()["error"]["details"]["metric"] == ["Give a metric, or a PromQL expression in `expr`."]
    assert AlertRule.objects.get().expr == "up == 0"


def test_admin_rule_list_shows_a_promql_rule_by_its_expression(root):
    AlertRule.objects.create(name="Down", key="down", metric="", comparison=">", threshold=0, expr="up == 0")
    AlertRule.objects.create(name="Hot", key="hot", metric="temperature", comparison=">", threshold=80)

    body = root.get(reverse("admin:alerts_alertrule_changelist")).content.decode()

    assert '<td class="field-condition">up == 0</td>' in body
    assert '<td class="field-condition">temperature &gt; 80</td>' in body
