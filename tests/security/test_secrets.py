"""Secrets at rest: channel secrets round-trip through AES-256-GCM bound to their row;
`rotate_encryption_key` moves every value to the new key while the old one still reads;
a dump of the database and the log file hold no secret in plain text."""

import base64
import json
import logging
import secrets
import shutil
import subprocess
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from monitoring.crypto import DecryptionError, key_id, token_key_id
from monitoring.models import AuditLogEntry
from notifications.choices import ChannelKind, NotificationEvent
from notifications.models import NotificationChannel
from notifications.secrets import channel_settings, get_channel_secrets, set_channel_secrets
from notifications.senders import ChannelInfo, Message, sender_for

from .servers import http_server

SECRETS = {
    "smtp": "smtp-Pa55word-7c1e",
    "slack": "slack-token-9f3a",
    "twilio": "twilio-token-0d5b",
    "hook": "hook-token-41aa",
    "pagerduty": "pd-key-58e2",
    "api_key": "mon_config-key-6b7d9e0f1a2b3c4d",
}

CONFIG = f"""
notifications:
  email:
    enabled: false
    smtp_server: "mail.example.com"
    smtp_port: 587
    use_tls: true
    username: "alerts"
    password: "{SECRETS["smtp"]}"
    from_email: "monitoring@example.com"
    recipients: ["ops@example.com"]
  slack:
    enabled: false
    webhook_url: "https://hooks.slack.com/services/T000/B000/{SECRETS["slack"]}"
    channel: "#alerts"
  sms:
    enabled: false
    provider: "twilio"
    account_sid: "AC0123"
    auth_token: "{SECRETS["twilio"]}"
    from_number: "+15005550006"
    recipients: ["+15005550006"]
  webhook:
    enabled: false
    url: "https://hooks.example.com/alerts"
    headers:
      Content-Type: "application/json"
      Authorization: "Bearer {SECRETS["hook"]}"
  pagerduty:
    enabled: false
    integration_key: "{SECRETS["pagerduty"]}"
security:
  authentication:
    enabled: true
    method: "api_key"
    api_keys:
      - "{SECRETS["api_key"]}"
"""


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def imported(db, tmp_path):
    """The channels and API key of a configuration file, imported as an admin would."""
    path = tmp_path / "monitoring-config.yaml"
    path.write_text(CONFIG)
    call_command("import_config", str(path), stdout=StringIO(), stderr=StringIO())
    return {channel.kind: channel for channel in NotificationChannel.objects.all()}


def dump_database() -> str:
    """Everything the database holds, as text: SQLite's iterdump, PostgreSQL's pg_dump (or,
    without pg_dump, every text-like column of every table)."""
    if connection.vendor == "sqlite":
        return "\n".join(connection.connection.iterdump())
    params = connection.settings_dict
    if shutil.which("pg_dump"):
        result = subprocess.run(
            [
                "pg_dump",
                "--no-owner",
                "-h",
                params["HOST"] or "127.0.0.1",
                "-p",
                str(params["PORT"] or 5432),
                "-U",
                params["USER"],
                params["NAME"],
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "PGPASSWORD": params.get("PASSWORD") or ""},
        )
        return result.stdout
    chunks = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'character varying', 'jsonb', 'json')"
        )
        for table, column in cursor.fetchall():
            cursor.execute(f'SELECT "{column}"::text FROM "{table}"')  # noqa: S608 - names from the catalogue
            chunks += [str(row[0]) for row in cursor.fetchall()]
    return "\n".join(chunks)


@pytest.fixture
def role_groups(transactional_db):
    """The role groups of the data migration: an earlier transactional test's flush removed them."""
    from django.contrib.auth.models import Group, Permission

    from monitoring.roles import sync_role_groups

    sync_role_groups(Group, Permission)


@pytest.mark.django_db(transaction=True)  # pg_dump sees only committed rows
def test_no_secret_in_plain_text_in_a_database_dump_or_the_log(role_groups, imported, settings):
    channels = imported
    assert get_channel_secrets(channels[ChannelKind.EMAIL]) == {"password": SECRETS["smtp"]}
    assert channel_settings(channels[ChannelKind.WEBHOOK])["headers"]["Authorization"] == f"Bearer {SECRETS['hook']}"
    assert AuditLogEntry.objects.filter(action="import").exists()

    # A send logs what it does; the Slack URL is the credential.
    log_file = Path(django_settings.LOG_FILE)
    marker = f"secrets-test-marker-{secrets.token_hex(4)}"
    with http_server() as receiver:
        slack = ChannelInfo(
            id=channels[ChannelKind.SLACK].pk,
            key="slack",
            name="Slack",
            kind=ChannelKind.SLACK,
            settings={"webhook_url": f"{receiver.url}/services/T000/B000/{SECRETS['slack']}"},
        )
        message = Message(
            channel=slack,
            event=NotificationEvent.TEST,
            alerts=(),
            idempotency_key="secrets-test",
            now=datetime.now(UTC),
            timeout=3,
        )
        sender_for(slack).send(message)
        assert receiver.paths == [f"/services/T000/B000/{SECRETS['slack']}"]
    logging.getLogger("notifications").warning(marker)

    dump = dump_database()
    assert "notifications_notificationchannel" in dump and "monitoring_apikey" in dump  # a real dump
    log_text = log_file.read_text(errors="replace")
    assert marker in log_text  # the file is where this process logs
    for name, value in SECRETS.items():
        assert value not in dump, f"the {name} secret is in the database dump"
        assert value not in log_text, f"the {name} secret is in the log file"


@pytest.mark.django_db
def test_rotation_reencrypts_every_value_without_downtime(imported, settings):
    old, new = new_key(), new_key()
    settings.MONITORING_ENCRYPTION_KEY = old
    for channel in NotificationChannel.objects.exclude(secrets=""):  # written again, under the old key
        set_channel_secrets(channel, get_channel_secrets(channel))
        channel.save(update_fields=["secrets"])
    old_kid = key_id(base64.b64decode(old))
    assert {token_key_id(c.secrets) for c in NotificationChannel.objects.exclude(secrets="")} == {old_kid}

    # Phase 1: every process gets the new key as current and the old one as an old key.
    settings.MONITORING_ENCRYPTION_KEY = new
    settings.MONITORING_ENCRYPTION_OLD_KEYS = [old]
    email = NotificationChannel.objects.get(kind=ChannelKind.EMAIL)
    assert get_channel_secrets(email) == {"password": SECRETS["smtp"]}  # still readable mid-rotation

    dry = StringIO()
    call_command("rotate_encryption_key", "--dry-run", stdout=dry)
    assert "Dry run: 5 value(s) would be re-encrypted." in dry.getvalue()
    out = StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "Re-encrypted 5 value(s)" in out.getvalue()
    new_kid = key_id(base64.b64decode(new))
    assert {token_key_id(c.secrets) for c in NotificationChannel.objects.exclude(secrets="")} == {new_kid}
    entry = AuditLogEntry.objects.get(action="rotate")
    assert (entry.source, entry.object_id, entry.after["reencrypted"]) == ("cli", new_kid, 5)

    # Phase 2: the old key goes; everything still reads. A second run has nothing to do.
    settings.MONITORING_ENCRYPTION_OLD_KEYS = []
    assert get_channel_secrets(NotificationChannel.objects.get(kind=ChannelKind.PAGERDUTY)) == {
        "integration_key": SECRETS["pagerduty"]
    }
    again = StringIO()
    call_command("rotate_encryption_key", stdout=again)
    assert "Re-encrypted 0 value(s)" in again.getvalue()


@pytest.mark.django_db
def test_a_value_no_configured_key_reads_is_reported_and_left_alone(imported, settings):
    lost, current = new_key(), new_key()
    settings.MONITORING_ENCRYPTION_KEY = lost
    email = NotificationChannel.objects.get(kind=ChannelKind.EMAIL)
    set_channel_secrets(email, {"password": SECRETS["smtp"]})
    email.save(update_fields=["secrets"])
    stored = email.secrets
    settings.MONITORING_ENCRYPTION_KEY = current  # the old key was lost, not listed as old
    with pytest.raises(CommandError) as failed:
        call_command("rotate_encryption_key", stdout=StringIO())
    assert failed.value.returncode == 1
    assert f"notifications.NotificationChannel {email.pk}: encrypted under key" in str(failed.value)
    email.refresh_from_db()
    assert email.secrets == stored


@pytest.mark.django_db
def test_a_value_copied_to_another_channel_does_not_decrypt(imported):
    email, sms = NotificationChannel.objects.get(kind=ChannelKind.EMAIL), NotificationChannel.objects.get(kind="sms")
    NotificationChannel.objects.filter(pk=sms.pk).update(secrets=email.secrets)
    sms.refresh_from_db()
    with pytest.raises(DecryptionError, match="copied from another row"):
        get_channel_secrets(sms)
    assert json.dumps(get_channel_secrets(email)) == json.dumps({"password": SECRETS["smtp"]})
