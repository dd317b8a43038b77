"""Channel settings through the configuration file (issue 6): every key a sender reads is
accepted by the import, with its secrets encrypted, exported back (masked or not), and
imported again without a change; a bad value of each is refused with its key path."""

import copy
from pathlib import Path

import pytest
import yaml

from monitoring.audit import MASK
from monitoring.config_io import Action, ConfigError, export_config_text, import_config_file
from monitoring.config_io.channels import CHANNEL_COMMON_FIELDS
from notifications.choices import ChannelKind, NotificationEvent
from notifications.models import NotificationChannel
from notifications.secrets import SECRET_FIELDS, channel_settings, get_channel_secrets
from notifications.senders import SENDERS, AlertInfo, ChannelInfo, Message, sender_for

from .helpers import T0
from .servers import Reply

pytestmark = pytest.mark.django_db

CA_FILE = str(Path(__file__).resolve().parents[1] / "fixtures" / "monitoring-config.yaml")  # any file that exists


def full_channels(ca_file: str = CA_FILE) -> dict:
    """A channel of every kind with every setting its sender reads (two webhooks: the
    JSON and the Alertmanager format)."""
    return {
        "email": {
            "enabled": True,
            "smtp_server": "smtp.example.com",
            "smtp_port": 465,
            "use_tls": False,
            "use_ssl": True,
            "username": "alerts@example.com",
            "password": "app-password",
            "from_email": "alerts@example.com",
            "from_name": "IoT Monitoring",
            "recipients": ["admin@example.com", "devops@example.com"],
            "ca_file": ca_file,
            "verify_tls": False,
            "timeout": 15,
            "events": ["firing", "resolved"],
            "rate_limit_per_minute": 30,
            "template": "{{ title }}",
        },
        "slack": {
            "enabled": True,
            "webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX",
            "channel": "#alerts",
            "username": "MonitoringBot",
            "icon_emoji": ":warning:",
            "mention_channel": True,
            "timeout": 5,
            "events": ["firing", "acknowledged", "resolved", "escalation", "reminder"],
        },
        "sms": {
            "enabled": False,
            "provider": "twilio",
            "account_sid": "AC0123456789",
            "auth_token": "twilio-token",
            "from_number": "+15559999",
            "recipients": ["+15550001", "+15550002"],
            "api_base_url": "https://twilio-proxy.example.com",
            "timeout": 10,
            "events": ["firing"],
        },
        "webhook": {
            "enabled": True,
            "url": "https://api.example.com/hooks/alerts",
            "method": "PUT",
            "headers": {"Content-Type": "application/json", "Authorization": "Bearer t0ken", "X-Api-Key": "k3y"},
            "timeout": 2.5,
            "format": "json",
            "signing_secret": "hmac-secret",
            "events": ["firing", "resolved", "test"],
        },
        "alertmanager": {
            "enabled": True,
            "kind": "webhook",
            "name": "Alertmanager receiver",
            "url": "http://am-receiver.example.com:9095/alerts",
            "format": "alertmanager",
            "signing_secret": "other-secret",
        },
        "pagerduty": {
            "enabled": True,
            "integration_key": "R0UT1NGKEY",
            "severity_mapping": {"low": "info", "medium": "warning", "high": "error", "critical": "critical"},
            "events_url": "https://events.eu.pagerduty.com/v2/enqueue",
            "timeout": 8,
            "events": ["firing", "acknowledged", "resolved"],
        },
    }


def write(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def kind_of(key: str, item: dict) -> str:
    return item.get("kind", key)


def settings_of(item: dict) -> dict:
    """A channel section's sender settings: what is not a column of the channel row."""
    return {k: v for k, v in item.items() if k not in CHANNEL_COMMON_FIELDS}


def stored() -> dict:
    """Everything stored of each channel, the encrypted column as it is included."""
    return {
        c.key: {
            "kind": c.kind,
            "name": c.name,
            "enabled": c.enabled,
            "config": c.config,
            "settings": channel_settings(c),
            "secrets": c.secrets,
            "rate_limit_per_minute": c.rate_limit_per_minute,
            "template": c.template,
            "updated_at": c.updated_at,
        }
        for c in NotificationChannel.objects.all()
    }


def test_the_full_document_names_every_setting_every_sender_reads() -> None:
    """So that a setting added to a sender must be added here too, and is then round-tripped."""
    named: dict[str, set[str]] = {kind: set() for kind in SENDERS}
    for key, item in full_channels().items():
        named[kind_of(key, item)] |= set(settings_of(item))
    assert named == {kind: set(sender.settings_keys) for kind, sender in SENDERS.items()}


def test_every_setting_is_imported_with_its_secrets_encrypted(tmp_path) -> None:
    document = {"notifications": full_channels()}
    import_config_file(write(tmp_path / "config.yaml", document))

    for key, item in document["notifications"].items():
        channel = NotificationChannel.objects.get(key=key)
        assert channel.kind == kind_of(key, item)
        assert channel_settings(channel) == settings_of(item), key
        secret_names = set(SECRET_FIELDS[channel.kind])
        assert not secret_names & set(channel.config), key  # never in the readable column
        assert secret_names & set(settings_of(item)) <= set(get_channel_secrets(channel)), key
    webhook = NotificationChannel.objects.get(key="webhook")
    assert get_channel_secrets(webhook) == {
        "signing_secret": "hmac-secret",
        "headers": {"Authorization": "Bearer t0ken", "X-Api-Key": "k3y"},
    }
    assert webhook.config["headers"] == {"Content-Type": "application/json"}
    assert webhook.config["format"] == "json" and webhook.config["timeout"] == 2.5
    assert (
        "hmac-secret" not in webhook.secrets
        and "other-secret" not in NotificationChannel.objects.get(key="alertmanager").secrets
    )
    email = NotificationChannel.objects.get(key="email")
    assert email.rate_limit_per_minute == 30 and email.template == "{{ title }}"


@pytest.mark.parametrize("include_secrets", [False, True])
def test_import_export_import_changes_nothing(tmp_path, include_secrets: bool) -> None:
    import_config_file(write(tmp_path / "config.yaml", {"notifications": full_channels()}))
    before = stored()

    exported = tmp_path / "exported.yaml"
    exported.write_text(export_config_text(include_secrets=include_secrets))
    again = import_config_file(exported)

    channel_changes = [c for c in again.plan.changes if c.section == "notifications"]
    assert len(channel_changes) == 6
    assert all(c.action == Action.UNCHANGED for c in channel_changes), [c.describe() for c in channel_changes]
    assert stored() == before


def test_export_writes_every_setting_back_with_secrets_masked(tmp_path) -> None:
    original = full_channels()
    import_config_file(write(tmp_path / "config.yaml", {"notifications": original}))

    masked = yaml.safe_load(export_config_text())["notifications"]
    plain = yaml.safe_load(export_config_text(include_secrets=True))["notifications"]

    assert plain == original
    expected = copy.deepcopy(original)
    for key, item in expected.items():
        for name in SECRET_FIELDS[kind_of(key, item)]:
            if name in item:
                item[name] = MASK
    expected["webhook"]["headers"].update({"Authorization": MASK, "X-Api-Key": MASK})
    assert masked == expected
    assert masked["webhook"]["signing_secret"] == MASK and masked["alertmanager"]["signing_secret"] == MASK


def test_a_changed_signing_secret_is_an_update_of_the_secret_by_name_only(tmp_path) -> None:
    channels = full_channels()
    import_config_file(write(tmp_path / "config.yaml", {"notifications": channels}))
    channels["webhook"]["signing_secret"] = "rotated-secret"
    channels["webhook"]["format"] = "alertmanager"

    result = import_config_file(write(tmp_path / "config.yaml", {"notifications": channels}))

    change = result.plan.change("notifications", "webhook")
    assert change.action == Action.UPDATE
    described = change.describe()
    assert (
        "signing_secret (secret)" in described and "rotated-secret" not in described and "hmac-secret" not in described
    )
    assert "config.format 'json' -> 'alertmanager'" in described
    channel = NotificationChannel.objects.get(key="webhook")
    assert get_channel_secrets(channel)["signing_secret"] == "rotated-secret"


def test_a_ca_file_missing_on_this_machine_is_a_warning_not_an_error(tmp_path) -> None:
    channels = {"email": full_channels(ca_file="/nonexistent/ca.pem")["email"]}
    result = import_config_file(write(tmp_path / "config.yaml", {"notifications": channels}))

    assert result.applied
    assert result.plan.warnings == (
        "notifications.email.ca_file: /nonexistent/ca.pem is not a file on this machine; "
        "TLS connections of this channel fail",
    )
    assert NotificationChannel.objects.get(key="email").config["ca_file"] == "/nonexistent/ca.pem"


def _with(key: str, name: str, value) -> dict:
    channels = full_channels()
    channels[key][name] = value
    return channels


BAD_VALUES = {
    "webhook format": (
        _with("webhook", "format", "xml"),
        "notifications.webhook.format: 'xml' is not one of json alertmanager",
    ),
    "signing secret not text": (
        _with("webhook", "signing_secret", 12345),
        "notifications.webhook.signing_secret: 12345 is not a string",
    ),
    "signing secret too long": (
        _with("alertmanager", "signing_secret", "s" * 501),
        "notifications.alertmanager.signing_secret: is longer than 500 characters",
    ),
    "timeout zero": (
        _with("webhook", "timeout", 0),
        "notifications.webhook.timeout: 0 is not a number of seconds above 0 and at most 300",
    ),
    "timeout as text": (
        _with("slack", "timeout", "30"),
        "notifications.slack.timeout: '30' is not a number of seconds above 0 and at most 300",
    ),
    "timeout too long": (
        _with("pagerduty", "timeout", 3600),
        "notifications.pagerduty.timeout: 3600 is not a number of seconds above 0 and at most 300",
    ),
    "events_url not http": (
        _with("pagerduty", "events_url", "ftp://events.pagerduty.com/v2/enqueue"),
        "notifications.pagerduty.events_url: 'ftp://events.pagerduty.com/v2/enqueue' is not an http(s) URL",
    ),
    "api_base_url not a URL": (
        _with("sms", "api_base_url", "twilio proxy"),
        "notifications.sms.api_base_url: 'twilio proxy' is not an http(s) URL",
    ),
    "ca_file relative": (
        _with("email", "ca_file", "certs/ca.pem"),
        "notifications.email.ca_file: 'certs/ca.pem' is not an absolute file path",
    ),
    "verify_tls not a boolean": (
        _with("email", "verify_tls", "no"),
        "notifications.email.verify_tls: 'no' is not true or false",
    ),
    "from_name not text": (
        _with("email", "from_name", ["IoT"]),
        "notifications.email.from_name: ['IoT'] is not a string",
    ),
    "events not a list": (
        _with("slack", "events", "firing"),
        "notifications.slack.events: is a string, not a list",
    ),
    "unknown event": (
        _with("slack", "events", ["firing", "exploded"]),
        "notifications.slack.events[1]: 'exploded' is not one of " + " ".join(NotificationEvent.values),
    ),
    "event twice": (
        _with("sms", "events", ["firing", "firing"]),
        "notifications.sms.events[1]: 'firing' is listed twice",
    ),
    "severity mapping to an unknown PagerDuty severity": (
        _with("pagerduty", "severity_mapping", {"low": "minor"}),
        "notifications.pagerduty.severity_mapping.low: 'minor' is not one of info warning error critical",
    ),
    "severity mapping of an unknown severity": (
        _with("pagerduty", "severity_mapping", {"urgent": "critical"}),
        "notifications.pagerduty.severity_mapping.urgent: 'urgent' is not one of low medium high critical",
    ),
    "misspelt setting": (
        _with("webhook", "signing_secert", "x"),
        "notifications.webhook.signing_secert: unknown key (known: enabled, kind, name, rate_limit_per_minute, "
        "template, url, method, headers, timeout, format, signing_secret, events)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_bad_setting_is_refused_with_its_key_path_and_nothing_is_written(tmp_path, case: str) -> None:
    channels, message = BAD_VALUES[case]
    with pytest.raises(ConfigError) as refused:
        import_config_file(write(tmp_path / "config.yaml", {"notifications": channels}))
    assert [str(p) for p in refused.value.problems] == [message]
    assert not NotificationChannel.objects.exists()


# --- The senders read nothing that is not declared ------------------------------------------------


class ReadKeys(dict):
    """Channel settings that remember every key a sender asks for."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self.read.add(key)
        return super().__contains__(key)


TWILIO_OK = Reply(201, {"sid": "SM0123", "status": "queued", "to": "+15550001", "from": "+15559999", "body": "x"})
ALERT = AlertInfo(id=42, rule_name="High CPU", rule_key="high_cpu", severity="critical", value=97.5, fired_at=T0)
TEST_ALERT = AlertInfo(id=None, rule_name="Test")


def local_settings(key: str, item: dict, receiver, smtp_server, certificate) -> dict:
    """The full document's settings of a channel, pointed at the local servers."""
    settings = settings_of(item)
    if key == "email":
        settings |= {"smtp_server": "127.0.0.1", "smtp_port": smtp_server.port, "use_ssl": False, "use_tls": True}
        settings |= {"password": smtp_server.PASSWORD, "ca_file": str(certificate.cert_file), "verify_tls": True}
    elif key == "slack":
        settings["webhook_url"] = f"{receiver.url}/slack"
    elif key == "sms":
        settings["api_base_url"] = receiver.url
    elif key == "pagerduty":
        settings["events_url"] = f"{receiver.url}/v2/enqueue"
    else:
        settings["url"] = f"{receiver.url}/{key}"
    return settings


def test_every_setting_a_sender_reads_is_declared(receiver, smtp_server, certificate) -> None:
    """Drive each sender through the outbox's calls (is_noop, timeout, send) for every event
    against local servers, recording which settings it reads: the declared keys are exactly
    those (an SMS channel's `provider` is declared for the file, and only Twilio is spoken)."""
    receiver.default = TWILIO_OK
    read: dict[str, set[str]] = {kind: set() for kind in SENDERS}
    for key, item in full_channels().items():
        kind = kind_of(key, item)
        settings = ReadKeys(local_settings(key, item, receiver, smtp_server, certificate))
        channel = ChannelInfo(1, key, key, kind, settings)
        sender = sender_for(channel)
        sender.timeout(30.0)
        for event in NotificationEvent.values:
            sender.is_noop(event)
            alerts = (TEST_ALERT,) if event == NotificationEvent.TEST else (ALERT,)
            sender.send(Message(channel, event, alerts, f"{key}-{event}", T0, 2.0))
        read[kind] |= settings.read
    assert len(smtp_server.mails) == len(NotificationEvent.values)
    declared = {kind: set(sender.settings_keys) for kind, sender in SENDERS.items()}
    assert read == {
        kind: names - {"provider"} if kind == ChannelKind.SMS else names for kind, names in declared.items()
    }
