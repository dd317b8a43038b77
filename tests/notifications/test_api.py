"""`/api/notifications`: the history with its filters, pages and constant queries; test
messages through named channels; roles; and no channel secret in any answer."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.choices import AuditAction, AuditSource
from monitoring.models import AuditLogEntry
from notifications.choices import NotificationStatus
from notifications.models import Notification

from .helpers import fire
from .servers import Reply

READ = {None: 401, "norole": 403, "viewer": 200, "operator": 200, "admin": 200}
TEST = {None: 401, "norole": 403, "viewer": 403, "operator": 200, "admin": 200}
SLACK_URL_SECRET = "/services/T0SECRET/B0SECRET/XXXXXXXXSECRET"


@pytest.fixture
def channels(make_channel, receiver):
    return {
        "webhook": make_channel(
            "webhook", url=f"{receiver.url}/hook", timeout=2, headers={"Authorization": "Bearer hook-SECRET-token"}
        ),
        "slack": make_channel("slack", webhook_url=f"{receiver.url}{SLACK_URL_SECRET}", timeout=2),
    }


@pytest.fixture
def history(channels, make_rule):
    """Notifications of two alerts, the older created two days ago."""
    now = timezone.now()
    rule = make_rule(channels=[channels["webhook"], channels["slack"]])
    first = fire(rule, now - timedelta(days=2), {"host": "old"})
    second = fire(rule, now - timedelta(minutes=5), {"host": "new"})
    Notification.objects.filter(alert=second, channel=channels["slack"]).update(
        status=NotificationStatus.FAILED, last_error="HTTP 404: no_service", permanent_failure=True
    )
    return {"old": first, "new": second}


@pytest.mark.parametrize(("role", "status"), READ.items())
def test_history_needs_a_viewer(client_for, history, role, status):
    assert client_for(role).get("/api/notifications").status_code == status


@pytest.mark.parametrize(("role", "status"), TEST.items())
def test_test_messages_need_an_operator(client_for, channels, receiver, role, status):
    response = client_for(role).post("/api/notifications/test", {"channels": ["webhook"]}, format="json")
    assert response.status_code == status
    assert len(receiver.requests) == (1 if status == 200 else 0)


def test_history_of_the_last_24_hours_newest_first(client_for, history):
    body = client_for("viewer").get("/api/notifications").json()
    assert body["success"] is True and body["count"] == 2
    failed, pending = body["notifications"]
    assert failed["alert_id"] == history["new"].pk and failed["channel"] == "slack"
    assert failed["status"] == "failed" and failed["last_error"] == "HTTP 404: no_service"
    assert failed["permanent_failure"] is True and failed["rule"] == "high_cpu"
    assert pending["channel"] == "webhook" and pending["event"] == "firing" and pending["channel_kind"] == "webhook"
    three_days = client_for("viewer").get("/api/notifications?hours=72").json()
    assert three_days["count"] == 4


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("channel=slack", {("slack", "failed")}),
        ("status=pending", {("webhook", "pending")}),
        ("status=pending,failed", {("webhook", "pending"), ("slack", "failed")}),
        ("hours=72&status=pending&channel=slack", {("slack", "pending")}),
    ],
)
def test_history_filters(client_for, history, query, expected):
    body = client_for("viewer").get(f"/api/notifications?{query}").json()
    assert {(n["channel"], n["status"]) for n in body["notifications"]} == expected


def test_history_filter_by_alert(client_for, history):
    old = history["old"].pk
    body = client_for("viewer").get(f"/api/notifications?hours=72&alert={old}").json()
    assert body["count"] == 2 and {n["alert_id"] for n in body["notifications"]} == {old}


@pytest.mark.parametrize("query", ["status=lost", "hours=0", "hours=abc", "alert=x"])
def test_history_refuses_bad_filters(client_for, history, query):
    response = client_for("viewer").get(f"/api/notifications?{query}")
    assert response.status_code == 400 and response.json()["success"] is False


def test_history_pages(client_for, history):
    first = client_for("viewer").get("/api/notifications?hours=72&limit=3").json()
    assert len(first["notifications"]) == 3 and first["count"] == 4 and "offset=3" in first["next"]
    rest = client_for("viewer").get(first["next"]).json()
    assert len(rest["notifications"]) == 1 and rest["next"] is None


@pytest.mark.parametrize("alerts", [2, 20])
def test_history_query_count_does_not_grow_with_rows(
    client_for, channels, make_rule, django_assert_max_num_queries, alerts
):
    rule = make_rule(channels=list(channels.values()))
    for i in range(alerts):
        fire(rule, timezone.now(), {"host": f"h{i}"})
    client = client_for("viewer")
    with django_assert_max_num_queries(6):
        body = client.get("/api/notifications").json()
    assert body["count"] == 2 * alerts


def test_no_trailing_slash(client_for, history):
    assert client_for("viewer").get("/api/notifications/").status_code == 404


def test_test_message_reports_each_outcome_and_is_kept_and_audited(client_for, channels, receiver):
    receiver.respond = lambda request: Reply(404, "no_service") if SLACK_URL_SECRET in request.path else Reply(200)
    response = client_for("operator").post("/api/notifications/test", {"channels": ["webhook", "slack"]}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["all_sent"] is False
    results = {r["channel"]: r for r in body["results"]}
    assert results["webhook"]["status"] == "sent" and results["webhook"]["error"] == ""
    assert results["slack"]["status"] == "failed" and results["slack"]["error"] == "HTTP 404: no_service"
    hook_request = next(r for r in receiver.requests if r.path == "/hook")
    assert hook_request.json()["test"] is True and hook_request.json()["event"] == "test"

    rows = {n.channel.key: n for n in Notification.objects.filter(event="test")}
    assert rows["webhook"].status == "sent" and rows["slack"].last_error == "HTTP 404: no_service"
    assert rows["webhook"].pk == results["webhook"]["notification_id"]
    entries = AuditLogEntry.objects.filter(action=AuditAction.TEST, source=AuditSource.API)
    assert {(e.object_repr, e.after["status"]) for e in entries} == {("webhook", "sent"), ("slack", "failed")}
    assert {e.api_key_name for e in entries} == {"operator-key"}


def test_test_message_names_unknown_channels(client_for, channels):
    response = client_for("operator").post("/api/notifications/test", {"channels": ["pager"]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["channels"] == [
        "Unknown channel 'pager'; the channels are: slack, webhook."
    ]


def test_a_channel_kind_names_every_channel_of_it(client_for, channels, make_channel, receiver):
    make_channel("webhook", "webhook-2", url=f"{receiver.url}/second", timeout=2)
    channels["webhook"].key = "ops-hook"
    channels["webhook"].save()
    body = client_for("operator").post("/api/notifications/test", {"channels": ["webhook"]}, format="json").json()
    assert sorted(r["channel"] for r in body["results"]) == ["ops-hook", "webhook-2"]


def test_no_answer_contains_a_channel_secret(client_for, channels, history, receiver):
    answers = [
        client_for("admin").get("/api/notifications?hours=72").content,
        client_for("admin").post("/api/notifications/test", {"channels": []}, format="json").content,
    ]
    for content in answers:
        assert b"SECRET" not in content
    # The secrets did reach the receivers, so the test would see them leak.
    assert any("SECRET" in r.path for r in receiver.requests)
    assert any(r.headers.get("authorization") == "Bearer hook-SECRET-token" for r in receiver.requests)
