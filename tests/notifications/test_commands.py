"""`manage.py notify`: test messages from the command line, as the API sends them."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from monitoring.choices import AuditAction, AuditSource
from monitoring.models import AuditLogEntry
from notifications.models import Notification

from .servers import Reply


def notify(*args: str) -> str:
    out = StringIO()
    call_command("notify", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def channels(make_channel, receiver, users):
    return [
        make_channel("webhook", url=f"{receiver.url}/hook", timeout=2),
        make_channel("webhook", "ops", url=f"{receiver.url}/ops", timeout=2),
    ]


def test_notify_sends_through_the_named_channels_and_audits(channels, receiver, users):
    output = notify("--channels", "webhook", "--user", "operator")
    assert "webhook" in output and "sent" in output and "ops" not in output
    assert [r.path for r in receiver.requests] == ["/hook"]
    entry = AuditLogEntry.objects.get(action=AuditAction.TEST)
    assert (entry.source, entry.actor_name, entry.object_repr) == (AuditSource.CLI, "operator", "webhook")


def test_notify_without_channels_tests_every_enabled_one_as_json(channels, receiver, users):
    rows = json.loads(notify("--format", "json"))
    assert sorted((r["channel"], r["status"]) for r in rows) == [("ops", "sent"), ("webhook", "sent")]
    assert Notification.objects.filter(event="test", status="sent").count() == 2


def test_notify_exits_1_when_a_channel_fails(channels, receiver, users):
    receiver.respond = lambda request: Reply(500, "boom") if request.path == "/ops" else Reply(200)
    out = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("notify", "--channels", "webhook", "ops", stdout=out)
    assert failure.value.returncode == 1
    assert "The test message failed on ops." in str(failure.value)
    assert "HTTP 500: boom" in out.getvalue()


def test_notify_unknown_channel_is_a_usage_error(channels, users):
    with pytest.raises(CommandError) as failure:
        notify("--channels", "pager")
    assert failure.value.returncode == 2
    assert "the channels are: ops, webhook" in str(failure.value)


def test_notify_needs_an_operator(channels, receiver, users):
    with pytest.raises(CommandError) as failure:
        notify("--user", "viewer")
    assert failure.value.returncode == 1 and "operator" in str(failure.value)
    assert receiver.requests == []


def test_a_broken_channel_config_is_reported_as_its_outcome(make_channel, users):
    make_channel(
        "email",
        smtp_server="127.0.0.1",
        smtp_port="not-a-port",
        from_email="a@example.com",
        recipients=["b@example.com"],
    )
    out = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("notify", "--channels", "email", "--format", "json", stdout=out)
    assert failure.value.returncode == 1
    (row,) = json.loads(out.getvalue())
    assert row["status"] == "failed" and row["error"].startswith("internal error: ValueError")
