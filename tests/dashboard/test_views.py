"""The dashboard's pages: who may see them, what they show, their live part and JSON
export, and a number of queries that does not grow with the fleet."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from alerts.choices import AlertState
from tests.dashboard.conftest import build_fleet

PAGES = ["dashboard-overview", "dashboard-alerts", "dashboard-metrics", "dashboard-health", "dashboard-targets",
         "dashboard-logs"]  # fmt: skip
# Queries per page, whatever the size of the fleet (session, user and role included).
MAX_QUERIES = {
    "dashboard-overview": 14,
    "dashboard-alerts": 8,
    "dashboard-alert-detail": 8,
    "dashboard-metrics": 8,
    "dashboard-metrics-data": 7,
    "dashboard-health": 8,
    "dashboard-targets": 9,
    "dashboard-logs": 6,
}


def page_url(name: str, fleet: dict) -> str:
    if name == "dashboard-alert-detail":
        return reverse(name, args=[fleet["alerts"][0].pk])
    if name == "dashboard-metrics-data":
        return reverse(name) + "?metric=cpu_usage_percent&range=1h&width=800"
    return reverse(name)


@pytest.mark.django_db
@pytest.mark.parametrize("name", PAGES)
def test_anonymous_visitor_is_sent_to_the_login_page(client, name: str) -> None:
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


@pytest.mark.django_db
def test_user_without_a_role_is_refused(login) -> None:
    assert login("norole").get(reverse("dashboard-overview")).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("name", [*PAGES, "dashboard-alert-detail", "dashboard-metrics-data"])
def test_every_page_renders_with_a_fixed_number_of_queries(
    name: str, users, make_series, login, django_assert_max_num_queries
) -> None:
    small = build_fleet(3, users, make_series)
    client = login("admin")
    client.get(page_url(name, small))  # session and caches warm
    with CaptureQueriesContext(connection) as few:
        assert client.get(page_url(name, small)).status_code == 200
    large = build_fleet(15, users, make_series)
    with django_assert_max_num_queries(MAX_QUERIES[name]):
        response = client.get(page_url(name, large))
    assert response.status_code == 200
    with CaptureQueriesContext(connection) as many:
        client.get(page_url(name, large))
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


@pytest.mark.django_db
def test_overview_counts_firing_alerts_by_severity_and_lists_latest_events(fleet, login) -> None:
    response = login("viewer").get(reverse("dashboard-overview"))
    html = response.content.decode()
    firing = sum(1 for a in fleet["alerts"] if a.state in (AlertState.ACTIVE, AlertState.ACKNOWLEDGED))
    assert f'data-count="firing">{firing}<' in html
    assert "Latest alert events" in html and f"#{fleet['alerts'][-1].pk} High CPU" in html
    # Device checks cycle healthy, critical, warning; the gateway has no check (unknown).
    assert "3 <small>up</small> · 3 <small>down</small>" in html
    assert "2 degraded · 9 enabled" in html


@pytest.mark.django_db
def test_alert_tabs_show_only_their_state_and_filters_apply(fleet, login) -> None:
    client = login("viewer")
    active = [a for a in fleet["alerts"] if a.state == AlertState.ACTIVE]
    resolved = [a for a in fleet["alerts"] if a.state == AlertState.RESOLVED]
    html = client.get(reverse("dashboard-alerts")).content.decode()
    assert all(f'id="alert-{a.pk}"' in html for a in active)
    assert not any(f'id="alert-{a.pk}"' in html for a in resolved)
    html = client.get(reverse("dashboard-alerts") + "?tab=resolved").content.decode()
    assert all(f'id="alert-{a.pk}"' in html for a in resolved)
    one = active[0]
    html = client.get(
        reverse("dashboard-alerts") + f"?severity={one.severity}&target={one.target.slug}"
    ).content.decode()
    assert f'id="alert-{one.pk}"' in html
    assert sum(f'id="alert-{a.pk}"' in html for a in active) == 1


@pytest.mark.django_db
def test_viewer_sees_no_action_buttons_and_operator_does(fleet, login) -> None:
    viewer_html = login("viewer").get(reverse("dashboard-alerts")).content.decode()
    operator_html = login("operator").get(reverse("dashboard-alerts")).content.decode()
    assert "Acknowledge</button>" not in viewer_html and "Silence…" not in viewer_html
    assert "Acknowledge</button>" in operator_html and "Silence…" in operator_html
    assert "Run now" not in login("viewer").get(reverse("dashboard-health")).content.decode()
    assert "Run now" in login("operator").get(reverse("dashboard-health")).content.decode()


@pytest.mark.django_db
def test_alert_page_shows_history_notifications_and_chart(fleet, login) -> None:
    alert = fleet["alerts"][1]
    html = login("viewer").get(reverse("dashboard-alert-detail", args=[alert.pk])).content.decode()
    assert "Event history" in html and "Acknowledged" in html
    assert "Ops mail" in html and "Sent" in html
    assert "data-chart-url=" in html and "metric=cpu_usage_percent" in html and "label=host%3Ah1" in html


@pytest.mark.django_db
def test_fragment_request_answers_the_live_part_only(fleet, login) -> None:
    response = login("viewer").get(reverse("dashboard-alerts"), headers={"X-Dashboard-Fragment": "1"})
    html = response.content.decode()
    assert 'data-testid="alerts-table"' in html
    assert "<html" not in html and '<nav aria-label="Main">' not in html


@pytest.mark.django_db
@pytest.mark.parametrize("name", [*PAGES, "dashboard-alert-detail"])
def test_export_to_json_downloads_what_the_page_shows(name: str, fleet, login) -> None:
    response = login("admin").get(page_url(name, fleet) + "?format=json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="monitoring-')
    data = json.loads(response.content)
    assert data["page"]
    if name == "dashboard-alerts":
        assert {a["id"] for a in data["alerts"]} == {a.pk for a in fleet["alerts"] if a.state == AlertState.ACTIVE}
    if name == "dashboard-metrics":
        assert data["metric"] == "cpu_usage_percent" and data["series"] and data["thresholds"][0]["value"] == 80


@pytest.mark.django_db
def test_chart_data_is_bucketed_to_the_width_with_thresholds(fleet, login) -> None:
    client = login("viewer")
    data = client.get(reverse("dashboard-metrics-data") + "?metric=cpu_usage_percent&range=24h&width=300").json()
    assert data["unit"] == "%"
    assert data["step"] >= 24 * 3600 / 300
    assert all(len(s["t"]) <= 300 for s in data["series"])
    assert data["thresholds"] == [{"value": 80.0, "rule": "High CPU", "comparison": ">", "severity": "medium"}]
    assert client.get(reverse("dashboard-metrics-data") + "?metric=x&start=10&end=5").status_code == 400


@pytest.mark.django_db
def test_audit_log_tab_is_for_admins_only(fleet, login) -> None:
    assert 'data-testid="audit-table"' in login("admin").get(reverse("dashboard-logs")).content.decode()
    viewer = login("viewer").get(reverse("dashboard-logs") + "?tab=audit").content.decode()
    assert 'data-testid="audit-table"' not in viewer and 'data-testid="events-table"' in viewer


@pytest.mark.django_db
def test_targets_show_health_uptime_and_dependencies(fleet, login) -> None:
    html = login("viewer").get(reverse("dashboard-targets")).content.decode()
    device = fleet["targets"][0]
    assert f'id="target-{device.slug}"' in html
    assert "100.00 %" in html  # every stored result was healthy
    assert f'?q={fleet["gateway"].slug}">Gateway</a>' in html


ROLES = ("viewer", "operator", "admin")


def add_pending_discoveries(count: int, start: int = 0) -> list:
    from monitoring.choices import DiscoverySource, TargetKind
    from monitoring.discovery.models import DiscoveredTarget

    return [
        DiscoveredTarget.objects.create(
            source=DiscoverySource.NETWORK,
            identity=f"network:10.0.{i // 250}.{i % 250}:9100",
            kind=TargetKind.PROMETHEUS,
            name=f"Exporter {i}",
            endpoint=f"http://10.0.{i // 250}.{i % 250}:9100/metrics",
            labels={"rack": f"r{i % 3}"},
        )
        for i in range(start, start + count)
    ]


@pytest.mark.django_db
def test_targets_page_queries_stay_fixed_whatever_the_number_of_pending_discoveries(
    users, make_series, login, django_assert_max_num_queries
) -> None:
    build_fleet(3, users, make_series)
    add_pending_discoveries(2)
    client = login("admin")
    client.get(reverse("dashboard-targets"))  # session and caches warm
    with CaptureQueriesContext(connection) as few:
        assert b"Exporter 1" in client.get(reverse("dashboard-targets")).content
    add_pending_discoveries(70, start=2)  # more than the page lists
    with django_assert_max_num_queries(MAX_QUERIES["dashboard-targets"]):
        html = client.get(reverse("dashboard-targets")).content.decode()
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("dashboard-targets"))
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
    assert html.count('data-testid="approve-') == 50
    assert "72 await approval; the 50 newest are shown" in html


@pytest.mark.django_db
def test_pending_discoveries_are_listed_for_everyone_with_buttons_for_admins_only(fleet, login) -> None:
    from monitoring.choices import DiscoveryState

    rows = add_pending_discoveries(3)
    rows[2].state = DiscoveryState.REJECTED
    rows[2].save()
    pages = {role: login(role).get(reverse("dashboard-targets")).content.decode() for role in ROLES}
    for role, html in pages.items():
        assert 'data-testid="discovered-table"' in html, role
        assert f'id="discovered-{rows[0].pk}"' in html and "http://10.0.0.1:9100/metrics" in html, role
        assert f'id="discovered-{rows[2].pk}"' not in html, role  # rejected: no longer awaiting approval
    for role in ("viewer", "operator"):
        assert 'data-testid="approve-' not in pages[role]
        assert reverse("dashboard-discovered-approve", args=[rows[0].pk]) not in pages[role]
    admin = pages["admin"]
    assert f'data-testid="approve-{rows[0].pk}"' in admin and f'data-testid="reject-{rows[1].pk}"' in admin
    assert f'hx-post="{reverse("dashboard-discovered-reject", args=[rows[1].pk])}"' in admin
    assert 'name="csrfmiddlewaretoken"' in admin


@pytest.mark.django_db
def test_targets_page_without_pending_discoveries_shows_no_approval_section(fleet, login) -> None:
    assert 'data-testid="discovered-pending"' not in login("admin").get(reverse("dashboard-targets")).content.decode()


@pytest.mark.django_db
def test_targets_export_lists_pending_discoveries(fleet, login) -> None:
    rows = add_pending_discoveries(2)
    data = json.loads(login("viewer").get(reverse("dashboard-targets") + "?format=json").content)
    assert data["pending_discovered_total"] == 2
    assert {d["identity"] for d in data["pending_discovered"]} == {r.identity for r in rows}
    assert data["pending_discovered"][0]["labels"] == {"rack": "r1"}  # newest first
