import base64
import secrets

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from monitoring.crypto import (
    DecryptionError,
    EncryptionKey,
    Keyring,
    build_keyring,
    decrypt,
    derive_key,
    encrypt,
    key_id,
    keyring_from_settings,
    needs_reencryption,
    parse_key,
    reencrypt,
    token_key_id,
)
from notifications.choices import ChannelKind
from notifications.models import NotificationChannel
from notifications.secrets import (
    get_channel_secrets,
    is_secret_header,
    merge_channel_settings,
    set_channel_secrets,
    split_channel_settings,
)

CONTEXT = "notifications.notificationchannel:7:secrets"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(EncryptionKey(secrets.token_bytes(32)))


def test_round_trip_returns_the_plaintext(keyring):
    token = encrypt("app_password", context=CONTEXT, keyring=keyring)
    assert decrypt(token, context=CONTEXT, keyring=keyring) == b"app_password"
    assert "app_password" not in token


def test_value_names_its_format_and_key(keyring):
    version, kid, data = encrypt(b"x", context=CONTEXT, keyring=keyring).split(":")
    assert version == "v1"
    assert kid == keyring.current.kid == key_id(keyring.current.key)
    # 12-byte nonce + 1 byte of ciphertext + 16-byte tag
    assert len(base64.urlsafe_b64decode(data)) == 12 + 1 + 16


def test_each_value_gets_a_fresh_nonce(keyring):
    tokens = [encrypt("same", context=CONTEXT, keyring=keyring) for _ in range(200)]
    nonces = {base64.urlsafe_b64decode(t.split(":")[2])[:12] for t in tokens}
    assert len(nonces) == 200
    assert len(set(tokens)) == 200


def test_value_copied_to_another_row_is_refused(keyring):
    token = encrypt("app_password", context=CONTEXT, keyring=keyring)
    with pytest.raises(DecryptionError, match="copied from another row"):
        decrypt(token, context="notifications.notificationchannel:8:secrets", keyring=keyring)


def test_value_under_an_unknown_key_is_refused(keyring):
    token = encrypt("app_password", context=CONTEXT, keyring=keyring)
    other = Keyring(EncryptionKey(secrets.token_bytes(32)))
    with pytest.raises(DecryptionError, match=f"encrypted under key {keyring.current.kid}, which is not configured"):
        decrypt(token, context=CONTEXT, keyring=other)


def test_value_claiming_another_keys_id_is_refused(keyring):
    other = Keyring(EncryptionKey(secrets.token_bytes(32)))
    _, _, data = encrypt("app_password", context=CONTEXT, keyring=keyring).split(":")
    forged = f"v1:{other.current.kid}:{data}"
    with pytest.raises(DecryptionError, match="does not authenticate"):
        decrypt(forged, context=CONTEXT, keyring=other)


def test_tampered_ciphertext_is_refused(keyring):
    version, kid, data = encrypt("app_password", context=CONTEXT, keyring=keyring).split(":")
    blob = bytearray(base64.urlsafe_b64decode(data))
    blob[15] ^= 0x01  # a ciphertext byte, after the nonce
    tampered = f"{version}:{kid}:{base64.urlsafe_b64encode(bytes(blob)).decode()}"
    with pytest.raises(DecryptionError, match="altered"):
        decrypt(tampered, context=CONTEXT, keyring=keyring)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("app_password", "not an encrypted value"),
        ("v2:0123abcd:AAAA", "unsupported format 'v2'"),
        ("v1:0123abcd:AAAA", "not configured"),
    ],
)
def test_malformed_values_are_refused_with_a_reason(keyring, token, reason):
    with pytest.raises(DecryptionError, match=reason):
        decrypt(token, context=CONTEXT, keyring=keyring)


def test_truncated_value_is_refused(keyring):
    token = f"v1:{keyring.current.kid}:{base64.urlsafe_b64encode(b'short').decode()}"
    with pytest.raises(DecryptionError, match="too short"):
        decrypt(token, context=CONTEXT, keyring=keyring)


def test_old_keys_still_decrypt_and_rotation_moves_values_to_the_current_key():
    old = EncryptionKey(secrets.token_bytes(32))
    token = encrypt("token", context=CONTEXT, keyring=Keyring(old))
    rotated_ring = Keyring(EncryptionKey(secrets.token_bytes(32)), old=(old,))
    assert decrypt(token, context=CONTEXT, keyring=rotated_ring) == b"token"
    assert needs_reencryption(token, rotated_ring)
    rotated = reencrypt(token, context=CONTEXT, keyring=rotated_ring)
    assert token_key_id(rotated) == rotated_ring.current.kid
    assert not needs_reencryption(rotated, rotated_ring)
    assert decrypt(rotated, context=CONTEXT, keyring=Keyring(rotated_ring.current)) == b"token"


@pytest.mark.parametrize(
    "encode", [bytes.hex, lambda b: base64.b64encode(b).decode(), lambda b: base64.urlsafe_b64encode(b).decode()]
)
def test_key_is_read_from_hex_or_base64(encode):
    raw = secrets.token_bytes(32)
    assert parse_key(encode(raw), source="MONITORING_ENCRYPTION_KEY") == raw


@pytest.mark.parametrize("bad", ["secret", "00" * 31, base64.b64encode(b"x" * 16).decode(), "zz" * 32])
def test_malformed_key_fails_loudly_naming_the_setting(bad):
    with pytest.raises(ImproperlyConfigured, match="MONITORING_ENCRYPTION_KEY must be 32 random bytes"):
        parse_key(bad, source="MONITORING_ENCRYPTION_KEY")


def test_key_is_derived_from_secret_key_when_unset():
    with override_settings(MONITORING_ENCRYPTION_KEY="", MONITORING_ENCRYPTION_OLD_KEYS=[], SECRET_KEY="s" * 50):
        ring = keyring_from_settings()
    assert ring.current.key == derive_key("s" * 50)
    assert ring.current.key != derive_key("t" * 50)
    assert ring.old == ()


def test_explicit_key_is_current_and_the_derived_key_stays_readable():
    explicit = secrets.token_bytes(32)
    old = secrets.token_bytes(32)
    with override_settings(
        MONITORING_ENCRYPTION_KEY=explicit.hex(),
        MONITORING_ENCRYPTION_OLD_KEYS=[base64.b64encode(old).decode()],
        SECRET_KEY="s" * 50,
    ):
        ring = keyring_from_settings()
        derived_token = encrypt("x", context=CONTEXT, keyring=build_keyring("", (), "s" * 50))
        assert decrypt(derived_token, context=CONTEXT) == b"x"
    assert ring.current.key == explicit
    assert [k.key for k in ring.old] == [old, derive_key("s" * 50)]


def test_malformed_old_key_names_its_position():
    with (
        override_settings(MONITORING_ENCRYPTION_KEY="", MONITORING_ENCRYPTION_OLD_KEYS=["nope"]),
        pytest.raises(ImproperlyConfigured, match=r"MONITORING_ENCRYPTION_OLD_KEYS\[0\] must be 32 random bytes"),
    ):
        keyring_from_settings()


# --- channel secrets (notifications.secrets) -------------------------------------------------


@pytest.mark.django_db
def test_channel_secrets_round_trip_and_are_bound_to_their_row():
    first = NotificationChannel.objects.create(key="mail", name="Mail", kind=ChannelKind.EMAIL)
    second = NotificationChannel.objects.create(key="mail2", name="Mail 2", kind=ChannelKind.EMAIL)
    set_channel_secrets(first, {"password": "app_password"})
    first.save()

    stored = NotificationChannel.objects.get(pk=first.pk)
    assert "app_password" not in stored.secrets
    assert get_channel_secrets(stored) == {"password": "app_password"}

    second.secrets = stored.secrets  # copied to another row in the database
    second.save()
    with pytest.raises(DecryptionError, match="copied from another row"):
        get_channel_secrets(second)


@pytest.mark.django_db
def test_empty_secrets_clear_the_column():
    channel = NotificationChannel.objects.create(key="mail", name="Mail", kind=ChannelKind.EMAIL, secrets="old")
    set_channel_secrets(channel, {})
    assert channel.secrets == ""
    assert get_channel_secrets(channel) == {}


def test_secrets_need_a_saved_channel():
    with pytest.raises(ValueError, match="save the notification channel first"):
        set_channel_secrets(NotificationChannel(kind=ChannelKind.EMAIL), {"password": "x"})


@pytest.mark.parametrize(
    ("header", "secret"),
    [
        ("Authorization", True),
        ("proxy-authorization", True),
        ("Cookie", True),
        ("X-API-Key", True),
        ("X-Auth-Token", True),
        ("X-Hub-Signature-256", True),
        ("Content-Type", False),
        ("Accept", False),
        ("X-Request-Source", False),
    ],
)
def test_webhook_headers_that_carry_credentials_are_secret(header, secret):
    assert is_secret_header(header) is secret


@pytest.mark.parametrize(
    ("kind", "channel_config", "secret_part"),
    [
        (ChannelKind.EMAIL, {"smtp_server": "smtp", "username": "u", "password": "S1"}, {"password": "S1"}),
        (ChannelKind.SLACK, {"webhook_url": "https://hooks/S2", "channel": "#a"}, {"webhook_url": "https://hooks/S2"}),
        (ChannelKind.SMS, {"account_sid": "AC1", "auth_token": "S3"}, {"auth_token": "S3"}),
        (ChannelKind.PAGERDUTY, {"integration_key": "S4", "severity_mapping": {}}, {"integration_key": "S4"}),
        (
            ChannelKind.WEBHOOK,
            {"url": "https://x", "headers": {"Content-Type": "application/json", "Authorization": "Bearer S5"}},
            {"headers": {"Authorization": "Bearer S5"}},
        ),
    ],
)
def test_channel_settings_split_into_config_and_secrets_and_merge_back(kind, channel_config, secret_part):
    config, secret = split_channel_settings(kind, channel_config)
    assert secret == secret_part
    assert "S1" not in repr(config) and "S2" not in repr(config) and "S3" not in repr(config)
    assert "S4" not in repr(config) and "S5" not in repr(config)
    assert merge_channel_settings(config, secret) == channel_config
