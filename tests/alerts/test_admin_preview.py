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


# --- The preview of the form as edited (POST .../preview/, swapped in by htmx) ----------------


@pytest.fixture
def saved_rule() -> AlertRule:
    return AlertRule.objects.create(
        name="Hot", key="hot", metric="temperature", comparison=">", threshold=80, evaluation_interval=60
    )


def preview_url(rule: AlertRule | None = None) -> str:
    if rule is None:
        return reverse("admin:alerts_alertrule_preview_new")
    return reverse("admin:alerts_alertrule_preview", args=[rule.pk])


def test_preview_replays_the_form_as_edited_and_leaves_the_row_alone(root, hot_history, saved_rule):
    stored = AlertRule.objects.filter(pk=saved_rule.pk).values().get()

    as_saved = root.post(preview_url(saved_rule), rule_form())
    raised = root.post(preview_url(saved_rule), rule_form(threshold="99"))
    slower = root.post(preview_url(saved_rule), rule_form(duration="900"))

    assert as_saved.status_code == 200
    assert "2 time(s), on 1 of 2 series, firing 0.3 alert-hours in all" in as_saved.content.decode()
    assert "as edited, over the last 7 days" in as_saved.content.decode()
    assert raised.status_code == 200
    assert "Never, on 2 series" in raised.content.decode()  # 95 never exceeds 99
    assert "Never, on 2 series" in slower.content.decode()  # 10-minute spells, 15 minutes needed
    assert AlertRule.objects.filter(pk=saved_rule.pk).values().get() == stored


def test_preview_lists_the_would_be_transitions_latest_first(root, hot_history, saved_rule):
    response = root.post(preview_url(saved_rule), {**rule_form(), "preview_hours": "6"})

    body = response.content.decode()
    assert "as edited, over the last 6 hours" in body
    rows = response.context["transitions"]
    assert [row["change"] for row in rows] == ["active → resolved", "new → active"] * 2
    assert {row["labels"] for row in rows} == {"host=gw-1, severity=high"}
    assert [row["value"] for row in rows] == [50.0, 95.0, 50.0, 95.0]
    assert rows[0]["at"] > rows[-1]["at"]
    assert "<polyline" in body and "at most 1 at once" in body


def test_preview_on_the_add_page_creates_nothing(root, hot_history):
    response = root.post(preview_url(), rule_form(metric="", expr='max by (host) (temperature{host="gw-1"}) > 80'))

    assert response.status_code == 200, response.content
    assert "2 time(s), on 1 of 1 series" in response.content.decode()
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"comparison": "=>"}, "Comparison: Select a valid choice"),
        ({"threshold": "hot"}, "Threshold: Enter a number"),
        ({"expr": "temperature >"}, "Expr: Not a usable alert expression: 1:14: parse error"),
        ({"preview_hours": "5"}, "preview_hours: choose one of 6, 24, 168"),
        ({"metric": ""}, "Metric: Give a metric, or a PromQL expression in `expr`."),
    ],
)
def test_preview_of_an_invalid_form_answers_its_errors(root, hot_history, saved_rule, change, message):
    response = root.post(preview_url(saved_rule), rule_form(**change))

    assert response.status_code == 400
    assert any(error.startswith(message) for error in response.context["errors"]), response.context["errors"]
    assert 'class="errorlist"' in response.content.decode()
    assert AlertRule.objects.get(pk=saved_rule.pk).threshold == 80


def test_preview_of_an_expression_that_fails_on_the_data_says_why(root, make_series):
    now_ms = int(timezone.now().timestamp() * 1000)
    for name in ("temp_a", "temp_b"):
        make_series(name, {"room": "r1"}, [(now_ms - MINUTE_MS, 20.0)])

    response = root.post(preview_url(), rule_form(expr='abs({__name__=~"temp_a|temp_b"}) > 0'))

    assert response.status_code == 200
    assert response.context["errors"] == ["No preview: vector cannot contain metrics with the same labelset."]


def test_preview_needs_the_permission_the_form_needs(client, make_user, hot_history, saved_rule):
    viewer = make_user("staff-viewer", "viewer", is_staff=True)  # may see rules in the admin, not edit them
    client.force_login(viewer)
    assert client.get(reverse("admin:alerts_alertrule_change", args=[saved_rule.pk])).status_code == 200

    assert client.post(preview_url(saved_rule), rule_form()).status_code == 403
    assert client.post(preview_url(), rule_form()).status_code == 403


def test_preview_answers_only_posts_and_the_pages_offer_it(root, saved_rule):
    assert root.get(preview_url(saved_rule)).status_code == 405
    for page in (reverse("admin:alerts_alertrule_change", args=[saved_rule.pk]), reverse("admin:alerts_alertrule_add")):
        body = root.get(page).content.decode()
        assert "vendor/htmx/htmx.min.js" in body
        assert 'hx-target="#rule-preview"' in body and 'id="rule-preview"' in body
    add_page = root.get(reverse("admin:alerts_alertrule_add")).content.decode()
    assert f'hx-post="{preview_url()}"' in add_page


def test_a_promql_rule_is_saved_without_a_metric(root):
    response = root.post(reverse("admin:alerts_alertrule_add"), rule_form(metric="", expr="temperature > 80"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert AlertRule.objects.values_list("metric", "expr").get() == ("", "temperature > 80")
