"""Which settings of a notification channel are secret, and their storage: encrypted as one
JSON document in NotificationChannel.secrets, bound to the channel's row."""

import json
from typing import Any

from monitoring.crypto import decrypt, encrypt, row_context

from .choices import ChannelKind
from .models import NotificationChannel
from .senders import SENDERS

# The settings of each kind that are credentials, as the senders declare them (`secret`):
# email password, Slack webhook_url (the URL is the credential), SMS auth_token (a Twilio
# account SID names an account, like a username), PagerDuty integration_key, webhook
# signing_secret; a webhook's other secrets are header values: see is_secret_header.
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(name for name, setting in sender.settings_keys.items() if setting.secret)
    for kind, sender in SENDERS.items()
}
HEADERS = "headers"
SECRET_HEADER_NAMES = frozenset({"authorization", "proxy-authorization", "cookie"})
SECRET_HEADER_WORDS = ("token", "secret", "key", "auth", "signature", "password", "session")


def is_secret_header(name: str) -> bool:
    """Decide whether a webhook header carries a credential: Authorization, Cookie, and
    any header whose name mentions a token, secret, key, auth, signature, password or
    session (X-API-Key, X-Auth-Token, X-Hub-Signature...). Content-Type and the like are
    not, so they stay readable in the admin."""
    lowered = name.strip().lower()
    return lowered in SECRET_HEADER_NAMES or any(word in lowered for word in SECRET_HEADER_WORDS)


def split_channel_settings(kind: str, settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A channel's settings as (config, secrets): the secret fields of `kind`, and for
    webhooks the secret header values under "headers", go to secrets."""
    secret_names = SECRET_FIELDS.get(kind, ())
    config: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for name, value in settings.items():
        if name in secret_names:
            secrets[name] = value
        elif kind == ChannelKind.WEBHOOK and name == HEADERS and isinstance(value, dict):
            plain = {h: v for h, v in value.items() if not is_secret_header(h)}
            hidden = {h: v for h, v in value.items() if is_secret_header(h)}
            config[name] = plain
            if hidden:
                secrets[name] = hidden
        else:
            config[name] = value
    return config, secrets


def merge_channel_settings(config: dict[str, Any], secrets: dict[str, Any]) -> dict[str, Any]:
    """The inverse of split_channel_settings: one dict of every setting."""
    merged = dict(config)
    for name, value in secrets.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return merged


def set_channel_secrets(channel: NotificationChannel, secrets: dict[str, Any]) -> None:
    """Encrypt `secrets` into channel.secrets (an empty dict clears it). The channel must
    have been saved (its id is part of the encryption); the caller saves it again."""
    context = row_context(channel, "secrets")
    channel.secrets = encrypt(json.dumps(secrets, sort_keys=True), context=context) if secrets else ""


def get_channel_secrets(channel: NotificationChannel) -> dict[str, Any]:
    """The decrypted secrets of a channel; DecryptionError when they cannot be read."""
    if not channel.secrets:
        return {}
    return json.loads(decrypt(channel.secrets, context=row_context(channel, "secrets")))


def channel_settings(channel: NotificationChannel) -> dict[str, Any]:
    """Everything a sender needs: the channel's config with its secrets merged in."""
    return merge_channel_settings(channel.config, get_channel_secrets(channel))
