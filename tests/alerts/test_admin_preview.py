"""The rule page's preview (a replay of the rule over the last 7 days of stored samples)
and the rule form's validation: refused comparisons and durations, warned-about metrics."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alerts.admin import preview_rule
from alerts.models import AlertRule

pytestmark = pytest.mark.django_db

MINUTE_MS = 60_000


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "correct horse battery"))
    return client


def rule_form(**overrides) -> dict:
    data = {
        "name": "Hot",
        "key": "hot",
        "description": "",
        "enabled": "on",
        "metric": "temperature",
        "matchers": "{}",
        "comparison": ">",
        "threshold": "80",
        "duration": "0",
        "resolve_after": "",
        "expr": "",
        "severity": "high",
        "labels": "{}",
        "escalation_policy": "",
        "evaluation_interval": "60",
    }
    return {**data, **overrides}


@pytest.fixture
def hot_history(make_series):
    """Two series of `temperature` over the last 3 hours, one sample a minute: `gw-1` runs
    hot twice for 10 minutes, `gw-2` never."""
    now_ms = int(timezone.now().timestamp() * 1000) // MINUTE_MS * MINUTE_MS
    start = now_ms - 180 * MINUTE_MS

    def value(minute: int) -> float:
        return 95.0 if 30 <= minute < 40 or 100 <= minute < 110 else 50.0

    make_series("temperature", {"host": "gw-1"}, [(start + m * MINUTE_MS, value(m)) for m in range(180)])
    make_series("temperature", {"host": "gw-2"}, [(start + m * MINUTE_MS, 40.0) for m in range(180)])
    make_series("humidity", {"host": "gw-1"}, [(start + m * MINUTE_MS, 99.0) for m in range(180)])


def test_preview_counts_firings_over_stored_history(hot_history):
    rule = AlertRule(metric="temperature", comparison=">", threshold=80, duration=0, evaluation_interval=60)

    result = preview_rule(rule, timezone.now())

    assert result.fired == 2
    assert (result.firing_series, result.matched_series) == (1, 2)
    assert result.firing_seconds == 20 * 60  # two 10-minute spells, evaluated every minute
    assert result.evaluations == 7 * 24 * 60 + 1


def test_preview_honours_duration_and_matchers(hot_history):
    slow = AlertRule(metric="temperature", comparison=">", threshold=80, duration=15 * 60, evaluation_interval=60)
    assert preview_rule(slow, timezone.now()).fired == 0  # the spells are shorter than 15 minutes
    other = AlertRule(
        metric="temperature", matchers={"host": "gw-2"}, comparison=">", threshold=80, evaluation_interval=60
    )
    result = preview_rule(other, timezone.now())
    assert (result.fired, result.matched_series) == (0, 1)


def test_rule_change_page_shows_the_preview(root, hot_history):
    rule = AlertRule.objects.create(
        name="Hot", key="hot", metric="temperature", comparison=">", threshold=80, evaluation_interval=60
    )

    response = root.get(reverse("admin:alerts_alertrule_change", args=[rule.pk]))

    assert response.status_code == 200
    assert "Preview: the last 7 days of stored data" in response.content.decode()
    assert "2 time(s), on 1 of 2 series, firing 0.3 alert-hours in all" in response.content.decode()


def test_rule_change_page_says_when_nothing_matched(root):
    rule = AlertRule.objects.create(name="Cold", key="cold", metric="never_stored", comparison="<", threshold=0)
    response = root.get(reverse("admin:alerts_alertrule_change", args=[rule.pk]))
    assert "Never: no series of &#x27;never_stored&#x27; matching the rule" in response.content.decode()


@pytest.mark.parametrize(
    ("field", "value"),
    [("comparison", "=>"), ("duration", "-5"), ("resolve_after", "-1"), ("threshold", "nan")],
)
def test_rule_form_refuses_what_the_engine_cannot_evaluate(root, field, value):
    response = root.post(reverse("admin:alerts_alertrule_add"), rule_form(**{field: value}))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not AlertRule.objects.exists()


def test_rule_form_saves_an_unseen_metric_with_a_warning(root, hot_history):
    def warnings(response) -> list[str]:
        return [str(m) for m in response.context["messages"] if m.level_tag == "warning"]

    response = root.post(reverse("admin:alerts_alertrule_add"), rule_form(metric="temperatur"), follow=True)

    assert response.redirect_chain[-1][1] == 302
    assert AlertRule.objects.filter(metric="temperatur").exists()
    assert warnings(response) == [
        "No series of metric 'temperatur' has been stored yet: the rule is saved but matches nothing until one is. "
        "Check the name if that is unexpected."
    ]

    known = root.post(reverse("admin:alerts_alertrule_add"), rule_form(key="hot-2"), follow=True)
    assert known.redirect_chain[-1][1] == 302
    assert warnings(known) == []
