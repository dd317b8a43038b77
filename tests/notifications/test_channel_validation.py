"""Channel settings through the REST API and the admin (issue 6): both judge a channel by
its sender's declared settings exactly as the configuration import does, so a bad `format`,
a bad `timeout` or an unknown key is refused with its path and the import's message and
nothing is stored, and a channel saved through them exports and imports again unchanged."""

import json
from pathlib import Path

import pytest
import yaml
from django.test import Client

from monitoring.config_io import Action, ConfigError, export_config_text, import_config_file
from monitoring.config_io.schema import default_channel_name
from monitoring.models import AuditLogEntry
from notifications.choices import ChannelKind
from notifications.models import NotificationChannel
from notifications.secrets import SECRET_FIELDS, channel_settings, get_channel_secrets, split_channel_settings

from .test_config_roundtrip import full_channels, kind_of, settings_of, stored, write

pytestmark = pytest.mark.django_db

CHANNELS = "/api/notification-channels"
WEBHOOK = {"url": "https://api.example.com/hooks/alerts", "format": "json", "timeout": 5}
WEBHOOK_KNOWN = "url, method, headers, timeout, format, signing_secret, events"

# (what the request changes, the field path named, the import's message for the same setting)
BAD = {
    "format": ({"config": {**WEBHOOK, "format": "xml"}}, "config.format", "'xml' is not one of json alertmanager"),
    "timeout zero": (
        {"config": {**WEBHOOK, "timeout": 0}},
        "config.timeout",
        "0 is not a number of seconds above 0 and at most 300",
    ),
    "timeout negative": (
        {"config": {**WEBHOOK, "timeout": -5}},
        "config.timeout",
        "-5 is not a number of seconds above 0 and at most 300",
    ),
    "timeout as text": (
        {"config": {**WEBHOOK, "timeout": "30"}},
        "config.timeout",
        "'30' is not a number of seconds above 0 and at most 300",
    ),
    "unknown key": (
        {"config": {**WEBHOOK, "signing_secert": "x"}},
        "config.signing_secert",
        f"unknown key (known: {WEBHOOK_KNOWN})",
    ),
    "unknown event": (
        {"config": {**WEBHOOK, "events": ["firing", "exploded"]}},
        "config.events[1]",
        "'exploded' is not one of firing acknowledged resolved escalation reminder test",
    ),
    "secret too long": (
        {"config": WEBHOOK, "secrets": {"signing_secret": "s" * 501}},
        "secrets.signing_secret",
        "is longer than 500 characters",
    ),
}

# The file's channel section also holds the channel's columns, which the API has as fields.
COLUMNS = "enabled, kind, name, rate_limit_per_minute, template"
IMPORT_SAYS = {"unknown key": f"unknown key (known: {COLUMNS}, {WEBHOOK_KNOWN})"}


def import_message(settings: dict, path: Path) -> str:
    """The configuration import's problem for a webhook channel with these settings."""
    with pytest.raises(ConfigError) as refused:
        import_config_file(write(path, {"notifications": {"webhook": settings}}))
    [problem] = refused.value.problems
    return problem.message


def request_settings(change: dict) -> dict:
    return {**change.get("config", {}), **change.get("secrets", {})}


def assert_refused(response, path: str, message: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == "bad_request"
    assert body["error"]["details"] == {path: [message]}


# --- REST API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(BAD))
def test_api_refuses_a_bad_setting_on_create_with_its_path_and_the_import_message(client_for, tmp_path, case):
    change, path, message = BAD[case]
    import_says = import_message(request_settings(change), tmp_path / "config.yaml")
    assert import_says == IMPORT_SAYS.get(case, message)
    body = {"key": "hook", "name": "Hook", "kind": "webhook", **change}

    response = client_for("admin").post(CHANNELS, body, format="json")

    assert_refused(response, path, message)
    assert not NotificationChannel.objects.exists()
    assert not AuditLogEntry.objects.filter(object_type="notifications.notificationchannel").exists()


@pytest.mark.parametrize("case", list(BAD))
def test_api_refuses_a_bad_setting_on_patch_and_keeps_the_channel(client_for, case):
    admin = client_for("admin")
    created = admin.post(
        CHANNELS,
        {"key": "hook", "name": "Hook", "kind": "webhook", "config": WEBHOOK, "secrets": {"signing_secret": "old"}},
        format="json",
    )
    assert created.status_code == 201, created.content
    channel = NotificationChannel.objects.get(key="hook")
    before = (channel.config, channel.secrets, channel.updated_at)
    audits = AuditLogEntry.objects.count()
    change, path, message = BAD[case]

    response = admin.patch(f"{CHANNELS}/{channel.pk}", {**change, "name": "Renamed"}, format="json")

    assert_refused(response, path, message)
    channel.refresh_from_db()
    assert (channel.config, channel.secrets, channel.updated_at) == before and channel.name == "Hook"
    assert get_channel_secrets(channel) == {"signing_secret": "old"}
    assert AuditLogEntry.objects.count() == audits


def test_api_names_every_problem_at_once_and_a_stored_secret_the_new_kind_does_not_read(client_for):
    admin = client_for("admin")
    email = {"smtp_server": "smtp.example.com", "from_email": "a@example.com", "recipients": ["b@example.com"]}
    created = admin.post(
        CHANNELS,
        {"key": "mail", "name": "Mail", "kind": "email", "config": email, "secrets": {"password": "pw"}},
        format="json",
    )
    assert created.status_code == 201, created.content

    response = admin.patch(
        f"{CHANNELS}/{created.json()['channel']['id']}",
        {"kind": "webhook", "config": {**WEBHOOK, "format": "xml", "method": "DELETE"}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {
        "config.method": ["'DELETE' is not one of POST PUT PATCH GET"],
        "config.format": ["'xml' is not one of json alertmanager"],
        "secrets.password": [f"unknown key (known: {WEBHOOK_KNOWN})"],
    }
    assert NotificationChannel.objects.get(key="mail").kind == ChannelKind.EMAIL
    # Dropping the stored secrets makes the same change valid.
    changed = admin.patch(
        f"{CHANNELS}/{created.json()['channel']['id']}",
        {"kind": "webhook", "config": WEBHOOK, "clear_secrets": True},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["channel"]["secrets_stored"] == []


def test_api_still_names_the_missing_settings_of_a_kind(client_for):
    response = client_for("admin").post(
        CHANNELS, {"key": "pd", "name": "PD", "kind": "pagerduty", "config": {"timeout": 0}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {
        "config": ["A pagerduty channel needs integration_key (secrets may go in `secrets`)."],
        "config.timeout": ["0 is not a number of seconds above 0 and at most 300"],
    }


def api_body(key: str, item: dict) -> dict:
    """The full document's channel as an API request: secrets in `secrets`, the rest in `config`."""
    kind = kind_of(key, item)
    config, secrets = split_channel_settings(kind, settings_of(item))
    return {
        "key": key,
        "name": item.get("name") or default_channel_name(key, kind),
        "kind": kind,
        "enabled": item["enabled"],
        "rate_limit_per_minute": item.get("rate_limit_per_minute"),
        "template": item.get("template", ""),
        "config": config,
        "secrets": secrets,
    }


@pytest.mark.parametrize("include_secrets", [False, True])
def test_api_channels_with_every_setting_export_and_import_again_unchanged(client_for, tmp_path, include_secrets):
    admin = client_for("admin")
    original = full_channels()
    for key, item in original.items():
        response = admin.post(CHANNELS, api_body(key, item), format="json")
        assert response.status_code == 201, (key, response.content)
        channel = NotificationChannel.objects.get(key=key)
        assert channel_settings(channel) == settings_of(item), key
        assert not set(SECRET_FIELDS[channel.kind]) & set(channel.config), key
    before = stored()

    exported = export_config_text(include_secrets=include_secrets)
    if include_secrets:
        assert yaml.safe_load(exported)["notifications"] == original
    again = import_config_file(write(tmp_path / "exported.yaml", yaml.safe_load(exported)))

    changes = [c for c in again.plan.changes if c.section == "notifications"]
    assert len(changes) == len(original)
    assert all(c.action == Action.UNCHANGED for c in changes), [c.describe() for c in changes]
    assert stored() == before


# --- Admin ------------------------------------------------------------------------------------------

ADD = "/admin/notifications/notificationchannel/add/"


@pytest.fixture
def admin_client(users) -> Client:
    client = Client()
    client.force_login(users["admin"])
    return client


def form_data(config: dict, **fields) -> dict:
    data = {"name": "Hook", "key": "hook", "kind": "webhook", "enabled": "on", "config": json.dumps(config)}
    data |= {"rate_limit_per_minute": "", "template": "", "new_headers": "", "_save": "Save"}
    return data | fields


def form_errors(response) -> dict:
    assert response.status_code == 200, response.status_code  # the form again, not a redirect
    return response.context["adminform"].form.errors


@pytest.mark.parametrize("case", ["format", "timeout zero", "timeout as text", "unknown key", "unknown event"])
def test_admin_shows_a_bad_setting_on_the_config_field_and_stores_nothing(admin_client, case):
    change, path, message = BAD[case]

    response = admin_client.post(ADD, form_data(change["config"]))

    assert form_errors(response) == {"config": [f"{path.removeprefix('config.')}: {message}"]}
    assert not NotificationChannel.objects.exists()


def test_admin_shows_a_bad_secret_on_its_own_input(admin_client):
    response = admin_client.post(ADD, form_data(WEBHOOK, new_signing_secret="s" * 501))

    assert form_errors(response) == {"new_signing_secret": ["signing_secret: is longer than 500 characters"]}
    assert not NotificationChannel.objects.exists()


def test_admin_shows_a_missing_required_setting_on_its_input(admin_client):
    data = form_data({"timeout": 5}, kind="pagerduty", key="pd", name="PD")

    assert form_errors(admin_client.post(ADD, data)) == {"new_integration_key": ["integration_key: is required"]}
    assert admin_client.post(ADD, data | {"new_integration_key": "R0UT1NGKEY"}).status_code == 302
    assert get_channel_secrets(NotificationChannel.objects.get(key="pd")) == {"integration_key": "R0UT1NGKEY"}


def test_admin_refuses_settings_that_are_not_an_object(admin_client):
    response = admin_client.post(ADD, form_data([]) | {"config": '["url"]'})

    assert form_errors(response) == {"config": ["The settings are a JSON object of setting names to values."]}
    assert not NotificationChannel.objects.exists()


def test_admin_saves_a_valid_channel_and_refuses_a_bad_change_of_it(admin_client, tmp_path):
    headers = json.dumps({"Authorization": "Bearer t0ken"})
    settings = {**WEBHOOK, "method": "PUT", "headers": {"Content-Type": "application/json"}, "events": ["firing"]}

    saved = admin_client.post(ADD, form_data(settings, new_signing_secret="hmac", new_headers=headers))

    assert saved.status_code == 302, form_errors(saved)
    channel = NotificationChannel.objects.get(key="hook")
    assert channel.config == settings
    assert get_channel_secrets(channel) == {"signing_secret": "hmac", "headers": {"Authorization": "Bearer t0ken"}}
    again = import_config_file(write(tmp_path / "exported.yaml", yaml.safe_load(export_config_text())))
    assert again.plan.change("notifications", "hook").action == Action.UNCHANGED

    change_url = f"/admin/notifications/notificationchannel/{channel.pk}/change/"
    refused = admin_client.post(change_url, form_data({**settings, "timeout": 301}))

    assert form_errors(refused) == {"config": ["timeout: 301 is not a number of seconds above 0 and at most 300"]}
    channel.refresh_from_db()
    assert channel.config == settings and get_channel_secrets(channel)["signing_secret"] == "hmac"


# --- the export's mask ---------------------------------------------------------------------------


def test_api_reads_the_mask_as_the_stored_secret_and_refuses_it_when_nothing_is_stored(client_for):
    admin = client_for("admin")
    body = {"key": "hook", "name": "Hook", "kind": "webhook", "config": WEBHOOK}

    refused = admin.post(CHANNELS, {**body, "secrets": {"signing_secret": "********"}}, format="json")
    assert_refused(refused, "secrets.signing_secret", "is masked (********) but nothing is stored")
    assert not NotificationChannel.objects.exists()

    created = admin.post(
        CHANNELS,
        {**body, "secrets": {"signing_secret": "real", "headers": {"Authorization": "Bearer t0ken"}}},
        format="json",
    )
    assert created.status_code == 201, created.content
    channel = NotificationChannel.objects.get(key="hook")
    # What an export shows, sent back: the stored values stay.
    masked = {"signing_secret": "********", "headers": {"Authorization": "********"}}
    kept = admin.patch(f"{CHANNELS}/{channel.pk}", {"secrets": masked}, format="json")
    assert kept.status_code == 200, kept.content
    channel.refresh_from_db()
    assert get_channel_secrets(channel) == {"signing_secret": "real", "headers": {"Authorization": "Bearer t0ken"}}

    unknown_header = admin.patch(
        f"{CHANNELS}/{channel.pk}", {"secrets": {"headers": {"X-Other": "********"}}}, format="json"
    )
    assert_refused(unknown_header, "secrets.headers.X-Other", "is masked (********) but nothing is stored")


def test_admin_refuses_the_mask_as_a_secret(admin_client):
    response = admin_client.post(ADD, form_data(WEBHOOK, new_signing_secret="********"))

    assert form_errors(response) == {
        "new_signing_secret": ["******** is how exports hide a secret, not a secret: give the real value."]
    }
    assert not NotificationChannel.objects.exists()
