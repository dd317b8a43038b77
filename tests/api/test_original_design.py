"""The original design's README calls, sent to a live server exactly as curl sends them:
its request line, its headers (curl's own, plus each `-H`) and its body (`-d`, which curl
labels application/x-www-form-urlencoded), once with `X-API-Key` and once with
`Authorization: Bearer`. Each answer has the documented shape."""

import http.client
import json
import shlex
import socket
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from alerts.models import Alert, AlertRule
from healthchecks.models import HealthCheck
from monitoring.apikeys import create_api_key
from monitoring.models import MonitoringTarget
from monitoring.roles import sync_role_groups
from notifications.models import NotificationChannel

CURL_VERSION = "8.5.0"

# The commands as the README writes them. KEY, ALERT, ALERT2, RULE and TARGET stand for the
# values of the world below; check_answer says what each answer must hold.
README_CALLS = [
    'curl -H "X-API-Key: KEY" http://localhost:5002/api/status',
    'curl -H "X-API-Key: KEY" "http://localhost:5002/api/metrics?metric=cpu_usage_percent&hours=24"',
    'curl -H "X-API-Key: KEY" "http://localhost:5002/api/alerts?status=active"',
    'curl -H "X-API-Key: KEY" "http://localhost:5002/api/alerts?severity=critical"',
    'curl -X POST -H "X-API-Key: KEY" -d \'{"acknowledged_by": "admin"}\' '
    "http://localhost:5002/api/alerts/ALERT/acknowledge",
    'curl -X POST -H "X-API-Key: KEY" -d \'{"resolved_by": "admin"}\' http://localhost:5002/api/alerts/ALERT2/resolve',
    'curl -H "X-API-Key: KEY" http://localhost:5002/api/alert-rules',
    'curl -X POST -H "X-API-Key: KEY" -d \'{"duration_hours": 1}\' http://localhost:5002/api/alert-rules/RULE/silence',
    'curl -X POST -H "X-API-Key: KEY" http://localhost:5002/api/alert-rules/RULE/disable',
    'curl -X POST -H "X-API-Key: KEY" http://localhost:5002/api/alert-rules/RULE/enable',
    'curl -H "X-API-Key: KEY" http://localhost:5002/api/health-checks',
    'curl -X POST -H "X-API-Key: KEY" http://localhost:5002/api/health-checks/run',
    'curl -H "X-API-Key: KEY" "http://localhost:5002/api/targets/TARGET/health?hours=24"',
    'curl -H "X-API-Key: KEY" "http://localhost:5002/api/notifications?hours=24"',
    'curl -X POST -H "X-API-Key: KEY" -H "Content-Type: application/json" -d \'{"channels": ["email"]}\' '
    "http://localhost:5002/api/notifications/test",
]


def curl_request(command: str) -> tuple[str, str, dict[str, str], bytes | None]:
    """(method, url, headers, body) of a curl command line, with the headers curl adds."""
    words = shlex.split(command)[1:]
    method, url, headers, body = None, None, {}, None
    while words:
        word = words.pop(0)
        if word == "-X":
            method = words.pop(0)
        elif word == "-H":
            name, _, value = words.pop(0).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = words.pop(0).encode()
        else:
            url = word
    sent = {"User-Agent": f"curl/{CURL_VERSION}", "Accept": "*/*"}
    if body is not None:
        sent["Content-Type"] = "application/x-www-form-urlencoded"
        sent["Content-Length"] = str(len(body))
    sent.update(headers)  # an explicit -H replaces curl's own header of that name
    return method or ("POST" if body is not None else "GET"), url, sent, body


def send(command: str, base_url: str) -> tuple[int, dict]:
    method, url, headers, body = curl_request(command)
    parts, server = urlsplit(url), urlsplit(base_url)
    connection = http.client.HTTPConnection(server.hostname, server.port, timeout=30)
    try:
        connection.putrequest(
            method, f"{parts.path}?{parts.query}" if parts.query else parts.path, skip_accept_encoding=True
        )
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def world(transactional_db, smtp, live_server, make_series) -> dict[str, str]:
    # Transactional tests flush the tables, the role groups of the data migration too.
    sync_role_groups(Group, Permission)
    from django.contrib.auth.models import User

    admin = User.objects.create_user("admin", password="unused-password-x")
    admin.groups.add(Group.objects.get(name="admin"))
    key = create_api_key(user=admin, name="readme").plain
    now = timezone.now()
    make_series(
        "cpu_usage_percent",
        {"host": "gw-1"},
        [(int((now - timedelta(hours=h)).timestamp() * 1000), 40.0 + h) for h in range(6)],
    )
    rule = AlertRule.objects.create(
        key="high_cpu_usage", name="High CPU", metric="cpu_usage_percent", comparison=">", threshold=80
    )
    target = MonitoringTarget.objects.create(slug="web_server", name="Web server", kind="service")
    alerts = [
        Alert.objects.create(
            rule=rule, fingerprint=f"{n:032x}", labels={"n": str(n)}, severity=severity, state="active", fired_at=now
        )
        for n, severity in enumerate(["critical", "high"])
    ]
    server = urlsplit(live_server.url)
    HealthCheck.objects.create(
        key="web", name="Web port", kind="tcp", target=target, config={"host": "127.0.0.1", "port": server.port}
    )
    _, smtp_port = smtp
    NotificationChannel.objects.create(
        key="email",
        name="Email",
        kind="email",
        config={
            "smtp_server": "127.0.0.1",
            "smtp_port": smtp_port,
            "from_email": "monitoring@example.net",
            "recipients": ["ops@example.net"],
        },
    )
    return {
        "KEY": key,
        "ALERT": str(alerts[0].pk),
        "ALERT2": str(alerts[1].pk),
        "RULE": str(rule.pk),
        "TARGET": str(target.pk),
    }


def _command(template: str, world: dict[str, str], bearer: bool) -> str:
    command = template
    for name in ("ALERT2", "ALERT", "RULE", "TARGET", "KEY"):
        command = command.replace(name, world[name])
    if bearer:
        command = command.replace(f'"X-API-Key: {world["KEY"]}"', f'"Authorization: Bearer {world["KEY"]}"')
    return command


def check_answer(index: int, body: dict, world: dict[str, str]) -> None:
    """What the original design documents for each call."""
    assert body["success"] is True
    if index == 0:
        assert set(body["status"]) == {
            "system_health",
            "active_alerts",
            "monitoring_targets",
            "alert_rules",
            "health_checks",
        }
        assert body["status"]["active_alerts"] == 2 and body["status"]["monitoring_targets"] == 1
    elif index == 1:
        (series,) = body["metrics"]
        assert series["metric"] == "cpu_usage_percent" and len(series["points"]) == 6
    elif index == 2:
        assert {a["status"] for a in body["alerts"]} == {"active"} and len(body["alerts"]) == 2
    elif index == 3:
        assert [a["severity"] for a in body["alerts"]] == ["critical"]
    elif index == 4:
        assert body["alert"]["status"] == "acknowledged" and body["alert"]["id"] == int(world["ALERT"])
    elif index == 5:
        assert body["alert"]["status"] == "resolved" and body["alert"]["resolved_by"] == "admin"
    elif index == 6:
        assert [r["key"] for r in body["rules"]] == ["high_cpu_usage"]
    elif index == 7:
        assert body["silence"]["rule"] == int(world["RULE"]) and body["silence"]["status"] == "active"
    elif index in (8, 9):
        assert body["rule"]["enabled"] is (index == 9)
    elif index == 10:
        assert [c["key"] for c in body["health_checks"]] == ["web"]
    elif index == 11:
        assert [r["status"] for r in body["results"]] == ["healthy"] and body["queued"] == []
    elif index == 12:
        assert body["target"]["slug"] == "web_server"
        assert body["health"]["checks"][0]["results_count"] == 1  # the run above
    elif index == 13:
        assert body["notifications"] == [] and body["count"] == 0  # nothing sent yet
    elif index == 14:
        assert body["all_sent"] is True and [r["channel"] for r in body["results"]] == ["email"]


@pytest.mark.parametrize("bearer", [False, True], ids=["X-API-Key", "Bearer"])
def test_the_readme_calls_answer_as_documented(bearer, world, live_server, smtp):
    inbox, _ = smtp
    for index, template in enumerate(README_CALLS):
        command = _command(template, world, bearer)
        status, body = send(command, live_server.url)
        assert status == 200 or (status == 201 and "/silence" in command), (command, status, body)
        check_answer(index, body, world)
    assert len(inbox.messages) == 1 and b"ops@example.net" in inbox.messages[0]
    history = send(_command(README_CALLS[13], world, bearer), live_server.url)[1]
    assert [n["event"] for n in history["notifications"]] == ["test"]


def test_curl_without_a_key_gets_the_error_envelope(world, live_server):
    status, body = send("curl http://localhost:5002/api/status", live_server.url)
    assert status == 401
    assert body == {
        "success": False,
        "error": {"code": "unauthorized", "message": body["error"]["message"], "details": {}},
    }
