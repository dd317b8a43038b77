"""Alert rules with a PromQL `expr` (and the rule's duration as `for`), evaluated end to end
through alerts.evaluation.evaluate_rules with the engine's pending/firing/resolved rules."""

from datetime import UTC, datetime

import pytest

from alerts.choices import AlertState
from alerts.engine import RuleSpecError
from alerts.evaluation import evaluate_rules, spec_for_rule
from alerts.models import Alert, AlertRule
from monitoring.promql.alerting import evaluate_expr

from .conftest import T0

pytestmark = pytest.mark.django_db

FLEET_RULE = 'count(device_connectivity{site="north"} < 1) / count(device_connectivity{site="north"}) > 0.1'


def at(offset: float) -> datetime:
    return datetime.fromtimestamp(T0 + offset, tz=UTC)


def make_rule(key: str, expr: str, **fields: object) -> AlertRule:
    # metric/comparison/threshold are not used by a PromQL rule.
    defaults = {"name": key, "metric": "", "comparison": ">", "threshold": 0.0, "duration": 0, "expr": expr}
    return AlertRule.objects.create(key=key, **(defaults | fields))


def report_fleet(load, offset: float, down: int, total: int = 10) -> None:
    for device in range(total):
        value = 0.0 if device < down else 1.0
        load("device_connectivity", {"site": "north", "device_id": f"d{device}"}, [(offset, value)])
    load("device_connectivity", {"site": "south", "device_id": "s0"}, [(offset, 0.0)])  # another site


def test_fleet_rule_goes_pending_fires_after_its_duration_and_resolves(load):
    rule = make_rule("north-offline", FLEET_RULE, duration=120, severity="high", labels={"team": "fleet"})
    report_fleet(load, 0, down=1)  # 10 %: not more than 10 %
    evaluate_rules(now=at(0))
    assert not Alert.objects.exists()

    report_fleet(load, 60, down=3)  # 30 %
    evaluate_rules(now=at(60))
    alert = Alert.objects.get(rule=rule)
    assert alert.state == AlertState.PENDING
    assert alert.labels == {"team": "fleet", "severity": "high"}  # the result has no labels of its own
    assert alert.value == pytest.approx(0.3)
    assert FLEET_RULE in alert.message

    report_fleet(load, 120, down=3)
    evaluate_rules(now=at(120))
    alert.refresh_from_db()
    assert alert.state == AlertState.PENDING  # held for 60 s of the 120 s

    report_fleet(load, 180, down=2)
    evaluate_rules(now=at(180))
    alert.refresh_from_db()
    assert alert.state == AlertState.ACTIVE and alert.value == pytest.approx(0.2)

    report_fleet(load, 240, down=0)
    evaluate_rules(now=at(240))
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED


def test_each_series_of_the_result_is_one_alert(load):
    rule = make_rule("target-down", "up == 0")
    load('up{job="api",instance="a"}', [(0, 0)])
    load('up{job="api",instance="b"}', [(0, 1)])
    load('up{job="db",instance="c"}', [(0, 0)])
    evaluate_rules(now=at(0))
    alerts = {alert.labels["instance"]: alert for alert in Alert.objects.filter(rule=rule)}
    assert set(alerts) == {"a", "c"}
    # The metric name is dropped from an alert's labels, as Prometheus does.
    assert alerts["a"].labels == {"job": "api", "instance": "a", "severity": rule.severity}
    assert all(alert.state == AlertState.ACTIVE for alert in alerts.values())


def test_a_series_that_goes_stale_resolves_its_alert(load):
    rule = make_rule("hot", "temperature > 30")
    load("temperature", {"room": "a"}, [(0, 35)])
    evaluate_rules(now=at(0))
    assert Alert.objects.get(rule=rule).state == AlertState.ACTIVE
    # No sample for more than the 5-minute lookback: absent, so not true.
    evaluate_rules(now=at(301))
    assert Alert.objects.get(rule=rule).state == AlertState.RESOLVED


def test_rules_with_a_bad_expression_are_reported_not_evaluated(load):
    load('up{instance="a"}', [(0, 0)])
    load('up{instance="b"}', [(0, 0)])
    AlertRule.objects.create(key="broken", name="broken", metric="", comparison=">", threshold=0, expr="sum(up")
    matching = make_rule("many", "up + on() up")  # many-to-many: an execution error
    good = make_rule("good", "up == 0")
    summary = evaluate_rules(now=at(0))
    broken = AlertRule.objects.get(key="broken")
    assert sorted(summary.invalid) == sorted([broken.id, matching.id])
    assert Alert.objects.filter(rule=good).count() == 2
    assert not Alert.objects.filter(rule__in=[broken, matching]).exists()


def test_spec_for_rule_refuses_an_expression_outside_the_subset():
    rule = AlertRule(key="x", name="x", metric="", comparison=">", threshold=0, expr="absent(up)")
    with pytest.raises(RuleSpecError, match='function "absent" is not supported'):
        spec_for_rule(rule)
    rule.expr = "up[5m]"
    with pytest.raises(RuleSpecError, match="not a range vector"):
        spec_for_rule(rule)


def test_a_scalar_expression_is_one_alert_without_labels(load):
    assert evaluate_expr("1 > bool 0", at(0)) == [({}, 1.0)]
    rule = make_rule("always", "vector(1)")
    evaluate_rules(now=at(0))
    assert Alert.objects.get(rule=rule).labels == {"severity": rule.severity}
