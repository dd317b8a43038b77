"""The senders: one per channel kind behind one interface (`is_noop(event)`, `send(message)`
raising SendError), with one HTTP choke point that owns timeouts and turns status codes into
permanent or transient errors. Pure of the ORM: a Message (frozen data) in, an outcome out."""

import hashlib
import hmac
import json
import logging
import os
import smtplib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, parsedate_to_datetime
from enum import StrEnum
from typing import Any, ClassVar

import httpx
from django.template import Context, Engine, TemplateSyntaxError
from django.template.loader import render_to_string
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http import HttpClient as TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client as TwilioClient

from monitoring import outbound

from .choices import ChannelKind, NotificationEvent

log = logging.getLogger("notifications")

SEVERITY_COLOURS = {"low": "#439fe0", "medium": "#daa038", "high": "#e8710a", "critical": "#d00000"}
RESOLVED_COLOUR = "#2eb886"
ACKNOWLEDGED_COLOUR = "#8d8d8d"
TEST_COLOUR = "#6f42c1"
EVENT_VERBS = {
    NotificationEvent.FIRING: "firing",
    NotificationEvent.RESOLVED: "resolved",
    NotificationEvent.ACKNOWLEDGED: "acknowledged",
    NotificationEvent.ESCALATION: "escalated",
    NotificationEvent.REMINDER: "still firing",
    NotificationEvent.TEST: "test",
}
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
PAGERDUTY_SEVERITIES = {"low": "info", "medium": "warning", "high": "error", "critical": "critical"}
TWILIO_API_URL = "https://api.twilio.com"
# Twilio errors that no retry can fix: an invalid "To" number, a recipient who unsubscribed,
# a number that cannot receive SMS.
TWILIO_PERMANENT_CODES = frozenset({21211, 21610, 21614})
RETRY_AFTER_CAP_S = 3600.0
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not ended"
USER_AGENT = "iot-monitoring-notifications/1"


class SendError(Exception):
    """A send that did not reach its receiver. `permanent`: retrying cannot help (a removed
    Slack webhook, an invalid number). `retry_after`: seconds the receiver asked us to wait
    (429, `rate_limited`). `progress`: what was delivered before the failure (SMS
    recipients), so a retry does not send it twice."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        rate_limited: bool = False,
        retry_after: float | None = None,
        progress: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.rate_limited = rate_limited or retry_after is not None
        self.retry_after = retry_after
        self.progress = dict(progress or {})


# --- What a channel may configure -------------------------------------------------------------


class SettingType(StrEnum):
    """How a channel setting's value is checked where it is configured (the configuration
    file's import, monitoring.config_io.schema)."""

    TEXT = "text"
    URL = "url"  # http(s)
    EMAIL = "email"
    EMAILS = "emails"  # a list of distinct addresses
    PHONE = "phone"  # international form, +<country><number>
    PHONES = "phones"
    PORT = "port"
    FLAG = "flag"  # true or false
    SECONDS = "seconds"  # a positive number, at most MAX_TIMEOUT_S
    CHOICE = "choice"  # one of `choices`
    CHOICES = "choices"  # a list of distinct `choices`
    CHOICE_MAP = "choice_map"  # a mapping of `keys` to one of `choices`
    HEADERS = "headers"  # a mapping of header names to text
    PATH = "path"  # an absolute file path


@dataclass(frozen=True)
class Setting:
    """One key of a channel's settings that its sender reads, declared beside the code that
    reads it: the configuration import accepts exactly the declared keys, and the secret ones
    are stored encrypted (notifications.secrets), so neither can drift from the senders."""

    type: SettingType
    required: bool = False
    secret: bool = False
    choices: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # CHOICE_MAP: the keys it may have
    max_length: int | None = None


MAX_TIMEOUT_S = 300  # a sweep waits on a hung receiver for at most this long per message
WEBHOOK_FORMATS = ("json", "alertmanager")
WEBHOOK_METHODS = ("POST", "PUT", "PATCH", "GET")
# Read by every sender (the Sender base): the send timeout, and the events the channel wants.
COMMON_SETTINGS: dict[str, Setting] = {
    "timeout": Setting(SettingType.SECONDS),
    "events": Setting(SettingType.CHOICES, choices=tuple(NotificationEvent.values)),
}


# --- What a sender is given -------------------------------------------------------------------


@dataclass(frozen=True)
class AlertInfo:
    """One alert as the message templates and payloads see it."""

    id: int | None
    rule_name: str
    rule_key: str = ""
    description: str = ""
    metric: str = ""
    comparison: str = ""
    threshold: float | None = None
    severity: str = "medium"
    state: str = "active"
    value: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    message: str = ""
    fingerprint: str = ""
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    acknowledged_by: str = ""
    url: str = ""
    ack_url: str = ""


@dataclass(frozen=True)
class ChannelInfo:
    id: int | None
    key: str
    name: str
    kind: str
    settings: Mapping[str, Any]  # config with the decrypted secrets merged in
    template: str = ""


@dataclass(frozen=True)
class Message:
    """One message to one channel: a single alert's event, or several alerts of one event
    grouped because the channel's rate limit is reached (`more`: how many notifications of
    this channel still wait for a later message)."""

    channel: ChannelInfo
    event: str
    alerts: tuple[AlertInfo, ...]
    idempotency_key: str
    now: datetime
    timeout: float
    step: int = 0
    more: int = 0
    progress: Mapping[str, Any] = field(default_factory=dict)
    site: Mapping[str, str] = field(default_factory=dict)  # organization, project, environment, public_url

    @property
    def grouped(self) -> bool:
        return len(self.alerts) > 1

    @property
    def is_test(self) -> bool:
        return self.event == NotificationEvent.TEST

    @property
    def alert(self) -> AlertInfo | None:
        return self.alerts[0] if len(self.alerts) == 1 else None


# --- Message text ---------------------------------------------------------------------------------

# Plain-text templates (and per-channel overrides) render without HTML escaping.
TEXT_ENGINE = Engine(
    app_dirs=True,
    autoescape=False,
    builtins=["notifications.templatetags.notify"],
)


def title_of(message: Message) -> str:
    """The one-line headline: "[FIRING] High CPU on web-1", "12 alerts firing"."""
    site = message.site.get("organization") or "the monitoring system"
    if message.is_test:
        return f"Test notification from {site}"
    verb = EVENT_VERBS.get(message.event, str(message.event))
    if message.grouped:
        return f"{len(message.alerts)} alerts {verb}"
    alert = message.alerts[0]
    label = {
        NotificationEvent.ESCALATION: f"ESCALATION step {message.step}",
        NotificationEvent.REMINDER: "STILL FIRING",
    }.get(message.event, str(message.event).upper())
    where = f" on {alert.target}" if alert.target else ""
    return f"[{label}] {alert.rule_name}{where}"


def template_context(message: Message) -> dict[str, Any]:
    return {
        "event": str(message.event),
        "event_label": EVENT_VERBS.get(message.event, str(message.event)),
        "title": title_of(message),
        "alerts": list(message.alerts),
        "alert": message.alert,
        "count": len(message.alerts),
        "grouped": message.grouped,
        "more": message.more,
        "step": message.step,
        "test": message.is_test,
        "channel": message.channel.name,
        "mention": _mentions(message),
        **{k: v for k, v in message.site.items()},
    }


def render_text(message: Message, name: str, *, overridable: bool = True) -> str:
    """Render `notifications/<name>` for the message; the channel's own template, when it
    has one, replaces the kind's main text. A broken override falls back to the default
    (logged) rather than losing the notification."""
    context = template_context(message)
    if overridable and message.channel.template.strip():
        try:
            return TEXT_ENGINE.from_string(message.channel.template).render(Context(context, autoescape=False)).strip()
        except (TemplateSyntaxError, ValueError, TypeError, AttributeError, KeyError) as exc:
            log.warning("channel %s: its template failed (%s); using the default", message.channel.key, exc)
    return TEXT_ENGINE.get_template(f"notifications/{name}").render(Context(context, autoescape=False)).strip()


def _mentions(message: Message) -> bool:
    return message.event in (NotificationEvent.FIRING, NotificationEvent.ESCALATION, NotificationEvent.REMINDER)


def colour_of(message: Message) -> str:
    if message.is_test:
        return TEST_COLOUR
    if message.event == NotificationEvent.RESOLVED:
        return RESOLVED_COLOUR
    if message.event == NotificationEvent.ACKNOWLEDGED:
        return ACKNOWLEDGED_COLOUR
    rank = ["low", "medium", "high", "critical"]
    worst = max((a.severity for a in message.alerts), key=lambda s: rank.index(s) if s in rank else 1)
    return SEVERITY_COLOURS.get(worst, SEVERITY_COLOURS["medium"])


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


# --- The HTTP choke point ----------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped at an hour."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def _detail(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:300]
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


_clients: dict[int, httpx.Client] = {}


def _http_client() -> httpx.Client:
    """One client per process (building its TLS context costs tens of milliseconds); a
    forked worker makes its own rather than sharing the parent's connections."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        # Under the outbound policy (MONITORING_OUTBOUND_DENY/ALLOW), checked at connection time.
        client = _clients[pid] = outbound.httpx_client(follow_redirects=False, headers={"User-Agent": USER_AGENT})
    return client


def http_request(
    method: str,
    url: str,
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    content: bytes | None = None,
    data: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    auth: tuple[str, str] | None = None,
) -> httpx.Response:
    """The one place notifications go out over HTTP. A timeout or connection failure is a
    transient SendError; a URL that can never work is a permanent one. Redirects are not
    followed (a webhook answering 3xx is misconfigured). Error texts never contain the URL,
    since some URLs (Slack's) are the credential."""
    try:
        return _http_client().request(
            method,
            url,
            headers=dict(headers or {}),
            json=json_body,
            content=content,
            data=dict(data) if data is not None else None,
            params=dict(params) if params is not None else None,
            auth=auth,
            timeout=timeout,
        )
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise SendError(f"invalid URL: {type(exc).__name__}", permanent=True) from exc
    except outbound.OutboundDenied as exc:
        raise SendError(str(exc), permanent=True) from exc
    except httpx.TimeoutException as exc:
        raise SendError(f"no answer within {timeout:g} s ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise SendError(f"connection failed: {exc}") from exc


def error_for_status(
    response: httpx.Response, now: datetime, *, permanent: frozenset[int] = frozenset()
) -> SendError | None:
    """None for 2xx. 429 is transient with its Retry-After; 408, 425 and 5xx are transient;
    any other status (4xx, a redirect) is permanent: sending the same again cannot work."""
    code = response.status_code
    if 200 <= code < 300:
        return None
    if code == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        return SendError(_detail(response), rate_limited=True, retry_after=retry_after)
    if code in permanent:
        return SendError(_detail(response), permanent=True)
    if code >= 500 or code in (408, 425):
        return SendError(_detail(response))
    return SendError(_detail(response), permanent=True)


# --- Senders ----------------------------------------------------------------------------------------


class Sender:
    """Base of the senders. `groups`: whether several alerts can share one message (used when
    the channel's rate limit is reached); `max_group`: how many at most."""

    kind: ClassVar[str] = ""
    groups: ClassVar[bool] = True
    max_group: ClassVar[int] = 50
    # Every key of the channel's settings this sender reads (COMMON_SETTINGS included), in
    # the order the configuration file lists them.
    settings_keys: ClassVar[Mapping[str, Setting]] = COMMON_SETTINGS

    def __init__(self, channel: ChannelInfo) -> None:
        self.channel = channel
        self.settings = channel.settings

    def is_noop(self, event: str) -> bool:
        """Whether this channel ignores `event`: the config's `events` list, when given,
        names the events it wants (tests are always sent)."""
        wanted = self.settings.get("events")
        return bool(wanted) and event != NotificationEvent.TEST and event not in wanted

    def timeout(self, default: float) -> float:
        configured = self.settings.get("timeout")
        return float(configured) if configured else float(default)

    def send(self, message: Message) -> str:
        """Deliver `message`; return a note for the history ("" usually). Raise SendError."""
        raise NotImplementedError


class HttpSender(Sender):
    """A sender that makes one HTTP request per message through the choke point."""

    permanent_statuses: ClassVar[frozenset[int]] = frozenset()

    def http_method(self) -> str:
        return "POST"

    def url(self, message: Message) -> str:
        raise NotImplementedError

    def payload(self, message: Message) -> Any:
        raise NotImplementedError

    def headers(self, message: Message, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def send(self, message: Message) -> str:
        body = json.dumps(self.payload(message), default=str).encode()
        response = http_request(
            self.http_method(),
            self.url(message),
            timeout=message.timeout,
            headers=self.headers(message, body),
            content=body,
        )
        error = error_for_status(response, message.now, permanent=self.permanent_statuses)
        if error is not None:
            raise error
        return ""


class SlackSender(HttpSender):
    kind = ChannelKind.SLACK
    max_group = 50
    settings_keys = {
        "webhook_url": Setting(SettingType.URL, required=True, secret=True),  # the URL is the credential
        "channel": Setting(SettingType.TEXT, max_length=100),
        "username": Setting(SettingType.TEXT, max_length=100),
        "icon_emoji": Setting(SettingType.TEXT, max_length=100),
        "mention_channel": Setting(SettingType.FLAG),
        **COMMON_SETTINGS,
    }
    # Slack: 403 action_prohibited, 404 channel_not_found, 410 channel_is_archived.
    permanent_statuses = frozenset({400, 403, 404, 410})
    SECTION_LIMIT = 2900  # Slack refuses section texts over 3,000 characters

    def url(self, message: Message) -> str:
        url = self.settings.get("webhook_url")
        if not url:
            raise SendError("the Slack channel has no webhook_url", permanent=True)
        return url

    def payload(self, message: Message) -> dict[str, Any]:
        title = title_of(message)
        body = render_text(message, "slack.txt")
        mention = "<!channel> " if self.settings.get("mention_channel") and _mentions(message) else ""
        blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
        blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}} for chunk in self._chunks(body)]
        alert = message.alert
        if alert is not None and not message.is_test:
            value = "-" if alert.value is None else f"{alert.value:g}"
            fields = [("Rule", alert.rule_name), ("Severity", alert.severity), ("Value", value)]
            if alert.target:
                fields.append(("Target", alert.target))
            blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields]})
            buttons = []
            if alert.url:
                buttons.append(
                    {"type": "button", "text": {"type": "plain_text", "text": "View alert"}, "url": alert.url}
                )
            if alert.ack_url and alert.state == "active":
                buttons.append(
                    {
                        "type": "button",
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Acknowledge"},
                        "url": alert.ack_url,
                    }
                )
            if buttons:
                blocks.append({"type": "actions", "elements": buttons})
        elif message.site.get("public_url"):
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Open dashboard"},
                            "url": message.site["public_url"],
                        }
                    ],
                }
            )
        payload: dict[str, Any] = {
            "text": f"{mention}{title}",
            "attachments": [{"color": colour_of(message), "fallback": title, "blocks": blocks}],
        }
        for name in ("channel", "username", "icon_emoji"):
            if self.settings.get(name):
                payload[name] = self.settings[name]
        return payload

    def _chunks(self, text: str) -> list[str]:
        chunks, current = [], ""
        for line in text.splitlines():
            if current and len(current) + len(line) + 1 > self.SECTION_LIMIT:
                chunks.append(current)
                current = ""
            current = f"{current}\n{line}" if current else line[: self.SECTION_LIMIT]
        if current:
            chunks.append(current)
        return chunks or [" "]


class PagerDutySender(HttpSender):
    """Events API v2: one event per alert (never grouped: the dedup key is the alert's)."""

    kind = ChannelKind.PAGERDUTY
    groups = False
    max_group = 1
    settings_keys = {
        "integration_key": Setting(SettingType.TEXT, required=True, secret=True, max_length=200),
        "severity_mapping": Setting(
            SettingType.CHOICE_MAP, keys=tuple(PAGERDUTY_SEVERITIES), choices=tuple(PAGERDUTY_SEVERITIES.values())
        ),
        "events_url": Setting(SettingType.URL),
        **COMMON_SETTINGS,
    }
    ACTIONS = {
        NotificationEvent.FIRING: "trigger",
        NotificationEvent.ESCALATION: "trigger",
        NotificationEvent.REMINDER: "trigger",
        NotificationEvent.TEST: "trigger",
        NotificationEvent.ACKNOWLEDGED: "acknowledge",
        NotificationEvent.RESOLVED: "resolve",
    }

    def url(self, message: Message) -> str:
        return self.settings.get("events_url") or PAGERDUTY_EVENTS_URL

    def routing_key(self) -> str:
        key = self.settings.get("integration_key")
        if not key:
            raise SendError("the PagerDuty channel has no integration_key", permanent=True)
        return key

    def dedup_key(self, message: Message) -> str:
        alert = message.alerts[0]
        return f"test-{message.idempotency_key}" if message.is_test or alert.id is None else str(alert.id)

    def severity(self, severity: str) -> str:
        mapping = {**PAGERDUTY_SEVERITIES, **(self.settings.get("severity_mapping") or {})}
        return mapping.get(severity, "warning")

    def payload(self, message: Message, action: str | None = None) -> dict[str, Any]:
        alert = message.alerts[0]
        action = action or self.ACTIONS.get(message.event, "trigger")
        event: dict[str, Any] = {
            "routing_key": self.routing_key(),
            "event_action": action,
            "dedup_key": self.dedup_key(message),
        }
        if action != "trigger":
            return event
        details = {
            "rule": alert.rule_key or alert.rule_name,
            "metric": alert.metric,
            "condition": f"{alert.metric} {alert.comparison} {alert.threshold:g}"
            if alert.threshold is not None
            else "",
            "value": alert.value,
            "labels": dict(alert.labels),
            "event": str(message.event),
        }
        event["payload"] = {
            "summary": render_text(message, "pagerduty.txt")[:1024] or title_of(message),
            "source": alert.target or message.site.get("public_url") or "monitoring",
            "severity": self.severity("low" if message.is_test else alert.severity),
            "timestamp": iso(alert.fired_at or message.now),
            "component": alert.labels.get("service") or alert.target or "",
            "group": alert.labels.get("job", ""),
            "class": alert.metric,
            "custom_details": {k: v for k, v in details.items() if v not in ("", None, {})},
        }
        event["client"] = message.site.get("organization") or "IoT monitoring"
        if message.site.get("public_url"):
            event["client_url"] = message.site["public_url"]
        if alert.url:
            event["links"] = [{"href": alert.url, "text": "Alert in the monitoring dashboard"}]
        return event

    def send(self, message: Message) -> str:
        super().send(message)
        if message.is_test:
            # A test must not leave an open incident behind: close it again at once.
            body = json.dumps(self.payload(message, action="resolve")).encode()
            response = http_request(
                "POST", self.url(message), timeout=message.timeout, headers=self.headers(message, body), content=body
            )
            error = error_for_status(response, message.now)
            if error is not None:
                raise error
        return ""


class WebhookSender(HttpSender):
    """JSON to any URL; `format: alertmanager` speaks Prometheus Alertmanager's webhook (v4)."""

    kind = ChannelKind.WEBHOOK
    max_group = 100
    settings_keys = {
        "url": Setting(SettingType.URL, required=True),
        "method": Setting(SettingType.CHOICE, choices=WEBHOOK_METHODS),
        "headers": Setting(SettingType.HEADERS),  # secret by name: notifications.secrets.is_secret_header
        "timeout": COMMON_SETTINGS["timeout"],
        "format": Setting(SettingType.CHOICE, choices=WEBHOOK_FORMATS),
        "signing_secret": Setting(SettingType.TEXT, secret=True, max_length=500),
        **COMMON_SETTINGS,
    }
    SIGNATURE_HEADER = "X-Monitoring-Signature"
    TIMESTAMP_HEADER = "X-Monitoring-Timestamp"

    def is_noop(self, event: str) -> bool:
        # Alertmanager has no acknowledgements: its receivers would read one as "firing".
        if self.settings.get("format") == "alertmanager" and event == NotificationEvent.ACKNOWLEDGED:
            return True
        return super().is_noop(event)

    def url(self, message: Message) -> str:
        url = self.settings.get("url")
        if not url:
            raise SendError("the webhook channel has no url", permanent=True)
        return url

    def http_method(self) -> str:
        return str(self.settings.get("method") or "POST").upper()

    def headers(self, message: Message, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        headers.update({str(k): str(v) for k, v in (self.settings.get("headers") or {}).items()})
        headers["Idempotency-Key"] = message.idempotency_key
        secret = self.settings.get("signing_secret")
        if secret:
            timestamp = str(int(message.now.timestamp()))
            headers[self.TIMESTAMP_HEADER] = timestamp
            headers[self.SIGNATURE_HEADER] = "sha256=" + sign(secret, timestamp, body)
        return headers

    def payload(self, message: Message) -> dict[str, Any]:
        if self.settings.get("format") == "alertmanager":
            return self.alertmanager_payload(message)
        return {
            "version": "1",
            "event": str(message.event),
            "title": title_of(message),
            "text": render_text(message, "webhook.txt"),
            "test": message.is_test,
            "escalation_step": message.step,
            "more": message.more,
            "channel": message.channel.key,
            "sent_at": iso(message.now),
            "alerts": [
                {
                    "id": a.id,
                    "rule": a.rule_key,
                    "rule_name": a.rule_name,
                    "severity": a.severity,
                    "state": a.state,
                    "value": a.value,
                    "labels": dict(a.labels),
                    "target": a.target,
                    "message": a.message,
                    "fired_at": iso(a.fired_at),
                    "resolved_at": iso(a.resolved_at),
                    "url": a.url,
                }
                for a in message.alerts
            ],
        }

    def alertmanager_payload(self, message: Message) -> dict[str, Any]:
        """Alertmanager's webhook body, version 4, so its receivers work unchanged."""
        alerts = []
        for a in message.alerts:
            labels = {**{str(k): str(v) for k, v in a.labels.items()}}
            labels.setdefault("alertname", a.rule_key or a.rule_name)
            labels.setdefault("severity", a.severity)
            resolved = message.event == NotificationEvent.RESOLVED
            alerts.append(
                {
                    "status": "resolved" if resolved else "firing",
                    "labels": labels,
                    "annotations": {
                        k: v
                        for k, v in {"summary": a.message or a.rule_name, "description": a.description}.items()
                        if v
                    },
                    "startsAt": iso(a.fired_at or message.now),
                    "endsAt": iso(a.resolved_at or message.now) if resolved else ZERO_TIME,
                    "generatorURL": a.url,
                    "fingerprint": a.fingerprint or (str(a.id) if a.id is not None else ""),
                }
            )
        common = dict(alerts[0]["labels"]) if alerts else {}
        for alert in alerts[1:]:
            common = {k: v for k, v in common.items() if alert["labels"].get(k) == v}
        group_labels = {"alertname": common["alertname"]} if "alertname" in common else {}
        common_annotations = dict(alerts[0]["annotations"]) if alerts else {}
        for alert in alerts[1:]:
            common_annotations = {k: v for k, v in common_annotations.items() if alert["annotations"].get(k) == v}
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(group_labels.items()))
        return {
            "version": "4",
            "groupKey": f"{{}}:{{{inner}}}",
            "truncatedAlerts": 0,
            "status": "resolved" if all(a["status"] == "resolved" for a in alerts) else "firing",
            "receiver": message.channel.key,
            "groupLabels": group_labels,
            "commonLabels": common,
            "commonAnnotations": common_annotations,
            "externalURL": message.site.get("public_url", ""),
            "alerts": alerts,
        }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex: what a receiver recomputes to trust a
    webhook and to refuse a replayed one (the timestamp is signed too)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class _TwilioTransport(TwilioHttpClient):
    """Twilio's client speaks HTTP through our choke point (timeouts, errors), while it
    keeps building the requests and parsing Twilio's errors itself."""

    def __init__(self, timeout: float) -> None:
        super().__init__(logger=log, is_async=False, timeout=timeout)
        self.last_headers: Mapping[str, str] = {}

    def request(
        self,
        method: str,
        uri: str,
        params: dict | None = None,
        data: dict | None = None,
        headers: dict | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        response = http_request(
            method, uri, params=params, data=data, headers=headers, auth=auth, timeout=timeout or self.timeout
        )
        self.last_headers = response.headers
        return TwilioResponse(response.status_code, response.text, response.headers)


GSM7 = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = "^{}\\[~]|€\f"


def fit_sms_segment(text: str) -> str:
    """Cut `text` to one SMS segment: 160 GSM-7 units (the extension characters count
    twice), or 70 characters when it needs UCS-2 (an emoji, Cyrillic...)."""
    if all(c in GSM7 or c in GSM7_EXTENDED for c in text):
        units = [2 if c in GSM7_EXTENDED else 1 for c in text]
        if sum(units) <= 160:
            return text
        kept, used = [], 0
        for c, u in zip(text, units, strict=True):
            if used + u > 157:
                break
            kept.append(c)
            used += u
        return "".join(kept).rstrip() + "..."
    return text if len(text) <= 70 else text[:67].rstrip() + "..."


class SmsSender(Sender):
    """SMS through Twilio's own client, one message per recipient; the ones already sent
    are remembered (`progress`) so that a retry only sends to the others."""

    kind = ChannelKind.SMS
    max_group = 5
    settings_keys = {
        "provider": Setting(SettingType.CHOICE, choices=("twilio",)),  # the one this sender speaks
        "account_sid": Setting(SettingType.TEXT, required=True, max_length=100),
        "auth_token": Setting(SettingType.TEXT, required=True, secret=True, max_length=200),
        "from_number": Setting(SettingType.PHONE, required=True),
        "recipients": Setting(SettingType.PHONES, required=True),
        "api_base_url": Setting(SettingType.URL),
        **COMMON_SETTINGS,
    }

    def send(self, message: Message) -> str:
        settings = self.settings
        missing = [n for n in ("account_sid", "auth_token", "from_number", "recipients") if not settings.get(n)]
        if missing:
            raise SendError(f"the SMS channel lacks {', '.join(missing)}", permanent=True)
        transport = _TwilioTransport(message.timeout)
        client = TwilioClient(settings["account_sid"], settings["auth_token"], http_client=transport)
        client.api.base_url = (settings.get("api_base_url") or TWILIO_API_URL).rstrip("/")
        body = fit_sms_segment(render_text(message, "sms.txt"))
        sent = list(message.progress.get("sms_sent_to", []))
        failed = dict(message.progress.get("sms_failed", {}))
        transient: list[str] = []
        rate_limited, retry_after = False, None
        for number in recipients_of(settings):
            if number in sent or number in failed:
                continue
            try:
                client.messages.create(to=number, from_=settings["from_number"], body=body)
            except (TwilioRestException, TwilioServiceException) as exc:
                text = f"{number}: HTTP {exc.status}, Twilio error {exc.code}"
                if exc.status == 429:
                    rate_limited = True
                    retry_after = parse_retry_after(transport.last_headers.get("Retry-After"), message.now)
                if exc.code in TWILIO_PERMANENT_CODES or (400 <= int(exc.status) < 500 and exc.status != 429):
                    failed[number] = text
                else:
                    transient.append(text)
                continue
            except SendError as exc:
                transient.append(f"{number}: {exc.message}")
                continue
            sent.append(number)
        progress = {"sms_sent_to": sent, "sms_failed": failed}
        if transient:
            raise SendError(
                "; ".join([*transient, *failed.values()]),
                rate_limited=rate_limited,
                retry_after=retry_after,
                progress=progress,
            )
        if failed:
            delivered = f" (sent to {', '.join(sent)})" if sent else ""
            raise SendError("; ".join(failed.values()) + delivered, permanent=True, progress=progress)
        return ""


class _PolicySMTP(smtplib.SMTP):
    """smtplib's client connecting under the outbound policy: the server's name is resolved
    and checked, and the connection made to a checked address; STARTTLS still verifies the
    name (smtplib keeps it as `_host`)."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return outbound.create_connection(host, port, timeout, self.source_address)


class _PolicySMTPSSL(smtplib.SMTP_SSL):
    """Implicit TLS (port 465) under the outbound policy, verifying the server's name."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = outbound.create_connection(host, port, timeout, self.source_address)
        return self.context.wrap_socket(sock, server_hostname=self._host)


class EmailSender(Sender):
    """SMTP with STARTTLS (`use_tls`) or implicit TLS (`use_ssl`) and login; one message with
    a plain-text and an HTML part to all recipients."""

    kind = ChannelKind.EMAIL
    max_group = 100
    settings_keys = {
        "smtp_server": Setting(SettingType.TEXT, required=True, max_length=253),
        "smtp_port": Setting(SettingType.PORT),
        "use_tls": Setting(SettingType.FLAG),
        "use_ssl": Setting(SettingType.FLAG),
        "username": Setting(SettingType.TEXT, max_length=254),
        "password": Setting(SettingType.TEXT, secret=True, max_length=500),
        "from_email": Setting(SettingType.EMAIL, required=True),
        "from_name": Setting(SettingType.TEXT, max_length=200),
        "recipients": Setting(SettingType.EMAILS, required=True),
        "ca_file": Setting(SettingType.PATH),
        "verify_tls": Setting(SettingType.FLAG),
        **COMMON_SETTINGS,
    }

    def build(self, message: Message) -> EmailMessage:
        settings = self.settings
        email = EmailMessage()
        email["Subject"] = " ".join(render_text(message, "email_subject.txt", overridable=False).split())[:200]
        sender = settings["from_email"]
        email["From"] = formataddr((settings.get("from_name") or "Monitoring", sender))
        email["To"] = ", ".join(recipients_of(settings))
        domain = sender.rpartition("@")[2] or "monitoring.local"
        # The outbox key as Message-ID: a message sent twice shows as the same message.
        email["Message-ID"] = f"<{message.idempotency_key}@{domain}>"
        email["X-Monitoring-Event"] = str(message.event)
        text = render_text(message, "email.txt")
        email.set_content(text)
        if message.channel.template.strip():
            html = render_to_string("notifications/email_override.html", {"text": text})
        else:
            html = render_to_string("notifications/email.html", template_context(message))
        email.add_alternative(html, subtype="html")
        return email

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.get("ca_file") or None)
        if self.settings.get("verify_tls") is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def send(self, message: Message) -> str:
        settings = self.settings
        missing = [n for n in ("smtp_server", "from_email", "recipients") if not settings.get(n)]
        if missing:
            raise SendError(f"the email channel lacks {', '.join(missing)}", permanent=True)
        email = self.build(message)
        use_ssl, use_tls = bool(settings.get("use_ssl")), bool(settings.get("use_tls"))
        port = int(settings.get("smtp_port") or (465 if use_ssl else 587 if use_tls else 25))
        try:
            if use_ssl:
                context = self.tls_context()
                smtp = _PolicySMTPSSL(settings["smtp_server"], port, timeout=message.timeout, context=context)
            else:
                smtp = _PolicySMTP(settings["smtp_server"], port, timeout=message.timeout)
            with smtp:
                if use_tls and not use_ssl:
                    smtp.starttls(context=self.tls_context())
                if settings.get("username"):
                    smtp.login(settings["username"], settings.get("password") or "")
                refused = smtp.send_message(email)
        except outbound.OutboundDenied as exc:
            # Configuration, not a passing fault: retrying cannot help.
            raise SendError(str(exc), permanent=True) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            text = "; ".join(
                f"{rcpt}: {code} {reply.decode(errors='replace')}" for rcpt, (code, reply) in exc.recipients.items()
            )
            raise SendError(f"every recipient refused: {text}", permanent=all(c >= 500 for c in codes)) from exc
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise SendError(f"SMTP {exc.smtp_code} {reply}", permanent=exc.smtp_code >= 500) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # Connection refused or dropped, a timeout, a TLS handshake that failed.
            raise SendError(f"SMTP connection failed: {type(exc).__name__}: {exc}") from exc
        if refused:
            return "refused by the server: " + ", ".join(sorted(refused))
        return ""


def recipients_of(settings: Mapping[str, Any]) -> list[str]:
    """The `recipients` setting as a list (a single address typed in the admin as a string,
    or a comma-separated one, counts too)."""
    value = settings.get("recipients") or []
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


SENDERS: dict[str, type[Sender]] = {
    ChannelKind.EMAIL: EmailSender,
    ChannelKind.SLACK: SlackSender,
    ChannelKind.SMS: SmsSender,
    ChannelKind.WEBHOOK: WebhookSender,
    ChannelKind.PAGERDUTY: PagerDutySender,
}


def sender_for(channel: ChannelInfo) -> Sender:
    return SENDERS[channel.kind](channel)
