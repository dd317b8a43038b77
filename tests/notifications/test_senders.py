"""The senders against real servers on 127.0.0.1: each payload checked against the
service's documented format, and each answer turned into the right outcome."""

import hashlib
import hmac
from datetime import timedelta

import pytest

from notifications.choices import NotificationEvent
from notifications.senders import (
    AlertInfo,
    ChannelInfo,
    EmailSender,
    Message,
    PagerDutySender,
    SendError,
    SlackSender,
    SmsSender,
    WebhookSender,
    fit_sms_segment,
    parse_retry_after,
)

from .helpers import T0
from .servers import Reply, SmtpServer

ALERT = AlertInfo(
    id=42,
    rule_name="High CPU Usage",
    rule_key="high_cpu_usage",
    description="CPU usage is above 80%",
    metric="cpu_usage_percent",
    comparison=">",
    threshold=80,
    severity="critical",
    state="active",
    value=97.5,
    labels={"host": "gw-3", "target": "gateway"},
    target="gateway",
    message="High CPU Usage: cpu_usage_percent > 80 (value 97.5)",
    fingerprint="abc123",
    fired_at=T0,
    url="http://mon.example/alerts/42",
    ack_url="http://mon.example/alerts/42/#acknowledge",
)
SITE = {"organization": "MyHome IoT", "project": "Devices", "environment": "prod", "public_url": "http://mon.example"}


def message(kind: str, settings: dict, *, event=NotificationEvent.FIRING, alerts=(ALERT,), template="", **extra):
    channel = ChannelInfo(7, kind, kind.title(), kind, settings, template)
    fields = {"idempotency_key": "key-1", "now": T0, "timeout": 2.0, "site": SITE, **extra}
    return Message(channel=channel, event=event, alerts=tuple(alerts), **fields)


# --- Slack -----------------------------------------------------------------------------------------


def slack_settings(receiver, **extra) -> dict:
    return {
        "webhook_url": f"{receiver.url}/services/T000/B000/XXXX",
        "channel": "#alerts",
        "username": "MonitoringBot",
        "icon_emoji": ":warning:",
        **extra,
    }


def test_slack_message_is_block_kit_with_severity_colour_and_links(receiver) -> None:
    msg = message("slack", slack_settings(receiver, mention_channel=True))
    SlackSender(msg.channel).send(msg)

    (request,) = receiver.requests
    assert request.method == "POST" and request.path == "/services/T000/B000/XXXX"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["channel"] == "#alerts" and body["username"] == "MonitoringBot" and body["icon_emoji"] == ":warning:"
    assert body["text"].startswith("<!channel> [FIRING] High CPU Usage on gateway")
    (attachment,) = body["attachments"]
    assert attachment["color"] == "#d00000"  # critical
    blocks = attachment["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "[FIRING] High CPU Usage on gateway"}}
    assert all(b["type"] in {"header", "section", "actions", "context"} for b in blocks)
    fields = next(b["fields"] for b in blocks if "fields" in b)
    assert {"type": "mrkdwn", "text": "*Rule*\nHigh CPU Usage"} in fields
    assert {"type": "mrkdwn", "text": "*Value*\n97.5"} in fields
    assert {"type": "mrkdwn", "text": "*Target*\ngateway"} in fields
    buttons = next(b["elements"] for b in blocks if b["type"] == "actions")
    assert [(b["text"]["text"], b["url"]) for b in buttons] == [
        ("View alert", ALERT.url),
        ("Acknowledge", ALERT.ack_url),
    ]


def test_slack_resolved_is_green_without_mention_or_acknowledge_button(receiver) -> None:
    resolved = AlertInfo(**{**ALERT.__dict__, "state": "resolved", "resolved_at": T0 + timedelta(minutes=5)})
    msg = message("slack", slack_settings(receiver, mention_channel=True), event="resolved", alerts=(resolved,))
    SlackSender(msg.channel).send(msg)

    body = receiver.requests[0].json()
    assert not body["text"].startswith("<!channel>")
    assert body["attachments"][0]["color"] == "#2eb886"
    buttons = next(b["elements"] for b in body["attachments"][0]["blocks"] if b["type"] == "actions")
    assert [b["text"]["text"] for b in buttons] == ["View alert"]


@pytest.mark.parametrize("status", [403, 404, 410])
def test_slack_sender_treats_a_removed_webhook_as_permanent(receiver, status) -> None:
    receiver.default = Reply(status, "channel_not_found")
    msg = message("slack", slack_settings(receiver))
    with pytest.raises(SendError) as failure:
        SlackSender(msg.channel).send(msg)
    assert failure.value.permanent
    assert failure.value.message == f"HTTP {status}: channel_not_found"


def test_slack_sender_honours_retry_after_on_429(receiver) -> None:
    receiver.default = Reply(429, "rate_limited", {"Retry-After": "30"})
    msg = message("slack", slack_settings(receiver))
    with pytest.raises(SendError) as failure:
        SlackSender(msg.channel).send(msg)
    assert not failure.value.permanent and failure.value.rate_limited and failure.value.retry_after == 30


def test_a_5xx_is_transient_and_a_hang_times_out_as_transient(receiver) -> None:
    receiver.default = Reply(503, "down")
    msg = message("slack", slack_settings(receiver), timeout=0.3)
    with pytest.raises(SendError) as failure:
        SlackSender(msg.channel).send(msg)
    assert not failure.value.permanent and not failure.value.rate_limited

    receiver.default = Reply(hang=True)
    with pytest.raises(SendError) as failure:
        SlackSender(msg.channel).send(msg)
    assert not failure.value.permanent
    assert failure.value.message.startswith("no answer within 0.3 s")
    assert receiver.url not in failure.value.message  # a Slack URL is the credential


def test_a_refused_connection_is_transient(receiver) -> None:
    receiver.stop()
    msg = message("slack", slack_settings(receiver))
    with pytest.raises(SendError) as failure:
        SlackSender(msg.channel).send(msg)
    assert not failure.value.permanent and failure.value.message.startswith("connection failed")


def test_grouped_slack_message_lists_every_alert_and_the_rest_waiting(receiver) -> None:
    alerts = [AlertInfo(**{**ALERT.__dict__, "id": i, "labels": {"host": f"h{i}"}}) for i in range(12)]
    msg = message("slack", slack_settings(receiver), alerts=alerts, more=30)
    SlackSender(msg.channel).send(msg)

    body = receiver.requests[0].json()
    assert body["text"] == "12 alerts firing"
    text = "\n".join(b["text"]["text"] for b in body["attachments"][0]["blocks"] if b["type"] == "section")
    for i in range(12):
        assert f"`host=h{i}`" in text
    assert "+30 more, in the next messages." in text


def test_a_channel_template_overrides_the_text(receiver) -> None:
    template = "{{ alert.rule_name }} is {{ event }} at {{ alert.value|value }} ({{ alert.labels|labels }})"
    msg = message("slack", slack_settings(receiver), template=template)
    SlackSender(msg.channel).send(msg)
    sections = [b for b in receiver.requests[0].json()["attachments"][0]["blocks"] if b["type"] == "section"]
    assert sections[0]["text"]["text"] == "High CPU Usage is firing at 97.5 (host=gw-3, target=gateway)"


def test_a_broken_channel_template_falls_back_to_the_default(receiver) -> None:
    msg = message("slack", slack_settings(receiver), template="{% if %}")
    SlackSender(msg.channel).send(msg)
    sections = [b for b in receiver.requests[0].json()["attachments"][0]["blocks"] if b["type"] == "section"]
    # Slack's escaping of ">" in mrkdwn.
    assert sections[0]["text"]["text"].startswith("High CPU Usage: cpu_usage_percent &gt; 80")


# --- PagerDuty ---------------------------------------------------------------------------------------


def pagerduty_settings(receiver, **extra) -> dict:
    return {"integration_key": "R0UT1NGKEY", "events_url": f"{receiver.url}/v2/enqueue", **extra}


def test_pagerduty_trigger_follows_events_api_v2(receiver) -> None:
    receiver.default = Reply(202, {"status": "success", "message": "Event processed", "dedup_key": "42"})
    msg = message("pagerduty", pagerduty_settings(receiver, severity_mapping={"critical": "critical"}))
    PagerDutySender(msg.channel).send(msg)

    (request,) = receiver.requests
    assert request.path == "/v2/enqueue"
    event = request.json()
    assert event["routing_key"] == "R0UT1NGKEY"
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "42"
    payload = event["payload"]
    assert set(payload) >= {"summary", "source", "severity", "timestamp"}
    assert payload["severity"] == "critical"
    assert payload["summary"] == "[CRITICAL] High CPU Usage: cpu_usage_percent > 80 (value 97.5) on gateway"
    assert payload["source"] == "gateway"
    assert payload["timestamp"] == "2026-03-02T12:00:00Z"
    assert payload["custom_details"]["labels"] == {"host": "gw-3", "target": "gateway"}
    assert event["links"] == [{"href": ALERT.url, "text": "Alert in the monitoring dashboard"}]


@pytest.mark.parametrize(
    ("event", "action"),
    [(NotificationEvent.ACKNOWLEDGED, "acknowledge"), (NotificationEvent.RESOLVED, "resolve")],
)
def test_pagerduty_acknowledge_and_resolve_use_the_same_dedup_key(receiver, event, action) -> None:
    receiver.default = Reply(202, {"status": "success"})
    msg = message("pagerduty", pagerduty_settings(receiver), event=event)
    PagerDutySender(msg.channel).send(msg)
    assert receiver.requests[0].json() == {"routing_key": "R0UT1NGKEY", "event_action": action, "dedup_key": "42"}


@pytest.mark.parametrize(
    ("severity", "mapping", "expected"),
    [
        ("low", {}, "info"),
        ("medium", {}, "warning"),
        ("high", {}, "error"),
        ("critical", {}, "critical"),
        ("high", {"high": "critical"}, "critical"),
    ],
)
def test_pagerduty_severity_goes_through_the_mapping(receiver, severity, mapping, expected) -> None:
    receiver.default = Reply(202, {"status": "success"})
    alert = AlertInfo(**{**ALERT.__dict__, "severity": severity})
    msg = message("pagerduty", pagerduty_settings(receiver, severity_mapping=mapping), alerts=(alert,))
    PagerDutySender(msg.channel).send(msg)
    assert receiver.requests[0].json()["payload"]["severity"] == expected


def test_pagerduty_400_is_permanent(receiver) -> None:
    receiver.default = Reply(400, {"status": "invalid event", "errors": ["'routing_key' is invalid"]})
    msg = message("pagerduty", pagerduty_settings(receiver))
    with pytest.raises(SendError) as failure:
        PagerDutySender(msg.channel).send(msg)
    assert failure.value.permanent and "routing_key" in failure.value.message


def test_pagerduty_test_message_resolves_what_it_triggered(receiver) -> None:
    receiver.default = Reply(202, {"status": "success"})
    msg = message("pagerduty", pagerduty_settings(receiver), event=NotificationEvent.TEST)
    PagerDutySender(msg.channel).send(msg)
    trigger, resolve = (r.json() for r in receiver.requests)
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "test-key-1"
    assert trigger["payload"]["severity"] == "info"


# --- Twilio ----------------------------------------------------------------------------------------------

TWILIO_OK = Reply(
    201,
    {
        "sid": "SM0123456789abcdef0123456789abcdef",
        "status": "queued",
        "to": "+15550001",
        "from": "+15559999",
        "body": "x",
        "account_sid": "AC123",
    },
)


def sms_settings(receiver, recipients=("+15550001", "+15550002")) -> dict:
    return {
        "account_sid": "AC123",
        "auth_token": "tw-secret",
        "from_number": "+15559999",
        "recipients": list(recipients),
        "api_base_url": receiver.url,
    }


def test_sms_goes_through_twilios_client_with_its_form_fields(receiver) -> None:
    receiver.default = TWILIO_OK
    msg = message("sms", sms_settings(receiver))
    SmsSender(msg.channel).send(msg)

    assert [r.path for r in receiver.requests] == ["/2010-04-01/Accounts/AC123/Messages.json"] * 2
    first, second = receiver.requests
    assert first.method == "POST"
    assert first.headers["content-type"] == "application/x-www-form-urlencoded"
    assert first.headers["authorization"] == "Basic QUMxMjM6dHctc2VjcmV0"  # AC123:tw-secret
    form = first.form()
    assert form["To"] == ["+15550001"] and form["From"] == ["+15559999"]
    assert form["Body"] == ["FIRING CRITICAL: High CPU Usage on gateway (97.5)"]
    assert second.form()["To"] == ["+15550002"]


def test_sms_invalid_number_is_permanent_and_a_retry_skips_numbers_already_sent(receiver) -> None:
    receiver.script.extend(
        [TWILIO_OK, Reply(400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400})]
    )
    msg = message("sms", sms_settings(receiver))
    with pytest.raises(SendError) as failure:
        SmsSender(msg.channel).send(msg)
    assert failure.value.permanent
    assert "+15550002: HTTP 400, Twilio error 21211" in failure.value.message
    assert failure.value.progress["sms_sent_to"] == ["+15550001"]


def test_sms_server_error_is_retried_only_for_the_numbers_not_yet_sent(receiver) -> None:
    receiver.script.extend([TWILIO_OK, Reply(500, {"code": 20500, "message": "Internal", "status": 500})])
    msg = message("sms", sms_settings(receiver))
    with pytest.raises(SendError) as failure:
        SmsSender(msg.channel).send(msg)
    assert not failure.value.permanent

    receiver.default = TWILIO_OK
    retry = message("sms", sms_settings(receiver), progress=failure.value.progress)
    SmsSender(retry.channel).send(retry)
    assert [r.form()["To"][0] for r in receiver.requests] == ["+15550001", "+15550002", "+15550002"]


@pytest.mark.parametrize(
    ("text", "expected_length"),
    # "{" is a GSM-7 extension character and counts twice: 78 of them and "..." are 159 units.
    [("a" * 160, 160), ("a" * 200, 160), ("{" * 100, 81), ("é" * 300, 160), ("🔥" * 100, 70)],
)
def test_sms_text_is_cut_to_one_segment(text, expected_length) -> None:
    cut = fit_sms_segment(text)
    assert len(cut) == expected_length
    assert cut == text or cut.endswith("...")


# --- Webhook ------------------------------------------------------------------------------------------------


def test_webhook_posts_json_with_idempotency_key_headers_and_signature(receiver) -> None:
    settings = {
        "url": f"{receiver.url}/hook",
        "headers": {"Authorization": "Bearer T0KEN", "X-Team": "ops"},
        "signing_secret": "s3cret",
    }
    msg = message("webhook", settings, idempotency_key="5e1f")
    WebhookSender(msg.channel).send(msg)

    (request,) = receiver.requests
    assert request.headers["authorization"] == "Bearer T0KEN" and request.headers["x-team"] == "ops"
    assert request.headers["idempotency-key"] == "5e1f"
    timestamp = request.headers["x-monitoring-timestamp"]
    assert timestamp == str(int(T0.timestamp()))
    expected = hmac.new(b"s3cret", timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-monitoring-signature"] == f"sha256={expected}"
    body = request.json()
    assert body["event"] == "firing" and body["version"] == "1"
    assert body["alerts"][0]["id"] == 42 and body["alerts"][0]["labels"] == {"host": "gw-3", "target": "gateway"}


def test_webhook_without_secret_has_no_signature_and_uses_the_configured_method(receiver) -> None:
    msg = message("webhook", {"url": f"{receiver.url}/hook", "method": "PUT"})
    WebhookSender(msg.channel).send(msg)
    (request,) = receiver.requests
    assert request.method == "PUT"
    assert "x-monitoring-signature" not in request.headers


def test_webhook_alertmanager_format_is_version_4(receiver) -> None:
    other = AlertInfo(**{**ALERT.__dict__, "id": 43, "labels": {"host": "gw-4"}, "fingerprint": "def456"})
    msg = message("webhook", {"url": f"{receiver.url}/am", "format": "alertmanager"}, alerts=(ALERT, other))
    WebhookSender(msg.channel).send(msg)

    body = receiver.requests[0].json()
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["receiver"] == "webhook"
    assert body["groupKey"] == '{}:{alertname="high_cpu_usage"}'
    assert body["groupLabels"] == {"alertname": "high_cpu_usage"}
    assert body["commonLabels"] == {"alertname": "high_cpu_usage", "severity": "critical"}
    assert body["externalURL"] == "http://mon.example"
    assert body["truncatedAlerts"] == 0
    first = body["alerts"][0]
    assert set(first) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert first["labels"] == {
        "host": "gw-3",
        "target": "gateway",
        "alertname": "high_cpu_usage",
        "severity": "critical",
    }
    assert first["startsAt"] == "2026-03-02T12:00:00Z" and first["endsAt"] == "0001-01-01T00:00:00Z"
    assert first["annotations"]["summary"] == ALERT.message


def test_webhook_alertmanager_resolved_and_acknowledgements_not_sent(receiver) -> None:
    resolved_at = T0 + timedelta(minutes=3)
    resolved = AlertInfo(**{**ALERT.__dict__, "state": "resolved", "resolved_at": resolved_at})
    settings = {"url": f"{receiver.url}/am", "format": "alertmanager"}
    msg = message("webhook", settings, event="resolved", alerts=(resolved,))
    sender = WebhookSender(msg.channel)
    sender.send(msg)
    body = receiver.requests[0].json()
    assert body["status"] == "resolved" and body["alerts"][0]["endsAt"] == "2026-03-02T12:03:00Z"
    assert sender.is_noop(NotificationEvent.ACKNOWLEDGED)
    assert not sender.is_noop(NotificationEvent.RESOLVED)


def test_recipients_typed_as_one_string_still_count(smtp_server, certificate) -> None:
    settings = email_settings(smtp_server, certificate, recipients="admin@example.com, devops@example.com")
    msg = message("email", settings)
    EmailSender(msg.channel).send(msg)
    assert smtp_server.mails[0].rcpt_tos == ["admin@example.com", "devops@example.com"]


def test_channel_events_setting_makes_other_events_noops() -> None:
    sender = WebhookSender(ChannelInfo(1, "w", "w", "webhook", {"events": ["firing"]}))
    assert not sender.is_noop("firing")
    assert sender.is_noop("resolved")
    assert not sender.is_noop("test")


# --- Email ---------------------------------------------------------------------------------------------------


def email_settings(server: SmtpServer, certificate, **extra) -> dict:
    return {
        "smtp_server": "127.0.0.1",
        "smtp_port": server.port,
        "use_tls": True,
        "username": SmtpServer.USER,
        "password": SmtpServer.PASSWORD,
        "from_email": "alerts@example.com",
        "recipients": ["admin@example.com", "devops@example.com"],
        "ca_file": str(certificate.cert_file),
        **extra,
    }


def test_email_uses_starttls_and_login_with_text_and_html_to_every_recipient(smtp_server, certificate) -> None:
    msg = message("email", email_settings(smtp_server, certificate), idempotency_key="abc")
    EmailSender(msg.channel).send(msg)

    (mail,) = smtp_server.mails
    assert mail.tls and mail.login == SmtpServer.USER
    assert mail.mail_from == "alerts@example.com"
    assert mail.rcpt_tos == ["admin@example.com", "devops@example.com"]
    email = mail.message
    assert email["Subject"] == "[FIRING] High CPU Usage on gateway (critical)"
    assert email["Message-ID"] == "<abc@example.com>"
    assert email["To"] == "admin@example.com, devops@example.com"
    text = email.get_body(("plain",)).get_content()
    html = email.get_body(("html",)).get_content()
    assert "Value:     97.5 (cpu_usage_percent > 80)" in text
    assert "Acknowledge: http://mon.example/alerts/42/#acknowledge" in text
    assert '<a href="http://mon.example/alerts/42">High CPU Usage</a>' in html


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_email_over_implicit_tls(certificate) -> None:
    server = SmtpServer(certificate, implicit_tls=True)
    try:
        settings = email_settings(server, certificate, use_tls=False, use_ssl=True)
        msg = message("email", settings)
        EmailSender(msg.channel).send(msg)
        assert server.mails[0].tls
    finally:
        server.close()


def test_email_wrong_password_and_refused_recipients_are_permanent(smtp_server, certificate) -> None:
    msg = message("email", email_settings(smtp_server, certificate, password="wrong"))
    with pytest.raises(SendError) as failure:
        EmailSender(msg.channel).send(msg)
    assert failure.value.permanent and failure.value.message.startswith("SMTP 535")

    smtp_server.handler.refuse_rcpt = "550 5.1.1 mailbox unavailable"
    msg = message("email", email_settings(smtp_server, certificate))
    with pytest.raises(SendError) as failure:
        EmailSender(msg.channel).send(msg)
    assert failure.value.permanent and "550" in failure.value.message


def test_email_4xx_is_transient(smtp_server, certificate) -> None:
    smtp_server.handler.refuse_rcpt = "451 4.3.0 try again later"
    msg = message("email", email_settings(smtp_server, certificate))
    with pytest.raises(SendError) as failure:
        EmailSender(msg.channel).send(msg)
    assert not failure.value.permanent


def test_email_refuses_a_certificate_it_cannot_verify(smtp_server, certificate) -> None:
    settings = email_settings(smtp_server, certificate)
    del settings["ca_file"]
    msg = message("email", settings)
    with pytest.raises(SendError) as failure:
        EmailSender(msg.channel).send(msg)
    assert "SSLCertVerificationError" in failure.value.message
    assert smtp_server.mails == []


# --- Small pure parts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("30", 30.0),
        ("1.5", 1.5),
        ("Mon, 02 Mar 2026 12:01:00 GMT", 60.0),
        ("99999", 3600.0),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_as_a_date(header, expected) -> None:
    assert parse_retry_after(header, T0) == expected
