"""Secrets at rest: AES-256-GCM with a fresh nonce per value, the owning row's identity as
associated data and the key's id stored with each value, so keys can be rotated."""

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12  # 96 bits, the size GCM is specified for
TAG_BYTES = 16
HKDF_INFO = b"monitoring-secrets"
_TOKEN = re.compile(r"^(?P<version>v\d+):(?P<kid>[0-9a-f]{8}):(?P<data>[A-Za-z0-9_-]+={0,2})$")


class DecryptionError(Exception):
    """A stored value that cannot be decrypted: malformed, altered, moved to another row,
    or encrypted under a key that is not configured."""


@dataclass(frozen=True)
class EncryptionKey:
    key: bytes = field(repr=False)
    source: str = ""  # where it came from, for messages: "MONITORING_ENCRYPTION_KEY", ...

    @property
    def kid(self) -> str:
        return key_id(self.key)


@dataclass(frozen=True)
class Keyring:
    """The key new values are encrypted under, and every key a stored value may name."""

    current: EncryptionKey
    old: tuple[EncryptionKey, ...] = ()

    def find(self, kid: str) -> EncryptionKey | None:
        for candidate in (self.current, *self.old):
            if candidate.kid == kid:
                return candidate
        return None


def key_id(key: bytes) -> str:
    """A short public name of a key (not the key): 8 hex digits of a hash of it."""
    return hashlib.sha256(b"monitoring-key-id:" + key).hexdigest()[:8]


def parse_key(raw: str, *, source: str) -> bytes:
    """32 key bytes from base64 (standard or url-safe) or hex text; anything else fails
    loudly, naming `source` (the setting it came from)."""
    text = raw.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ImproperlyConfigured(
            f"{source} must be {KEY_BYTES} random bytes written as base64 (44 characters) or hex "
            f'(64 characters); make one with: python -c "import secrets; print(secrets.token_hex({KEY_BYTES}))"'
        )
    return key


def derive_key(secret_key: str) -> bytes:
    """The key used when MONITORING_ENCRYPTION_KEY is unset: HKDF-SHA256 of SECRET_KEY
    with its own info string, so it equals no other key derived from SECRET_KEY."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=HKDF_INFO).derive(secret_key.encode())


@lru_cache(maxsize=8)
def build_keyring(current: str, old: tuple[str, ...], secret_key: str) -> Keyring:
    """The keyring from the settings' raw values. With an explicit key, the key derived
    from SECRET_KEY stays readable (as an old key), so setting a key for the first time
    needs no downtime: values re-encrypt under it on their next write or rotation."""
    derived = EncryptionKey(derive_key(secret_key), source="SECRET_KEY (derived)")
    old_keys = tuple(
        EncryptionKey(
            parse_key(raw, source=f"MONITORING_ENCRYPTION_OLD_KEYS[{index}]"), "MONITORING_ENCRYPTION_OLD_KEYS"
        )
        for index, raw in enumerate(old)
    )
    if current:
        return Keyring(
            EncryptionKey(parse_key(current, source="MONITORING_ENCRYPTION_KEY"), "MONITORING_ENCRYPTION_KEY"),
            (*old_keys, derived),
        )
    return Keyring(derived, old_keys)


def keyring_from_settings() -> Keyring:
    old = getattr(settings, "MONITORING_ENCRYPTION_OLD_KEYS", ()) or ()
    return build_keyring(settings.MONITORING_ENCRYPTION_KEY or "", tuple(old), settings.SECRET_KEY)


def row_context(obj: models.Model, field_name: str) -> str:
    """The associated data binding a value to one row's field: a value copied to another
    row or field does not decrypt there."""
    if obj.pk is None:
        raise ValueError(f"save the {obj._meta.verbose_name} first: its {field_name} are bound to its id")
    return f"{obj._meta.label_lower}:{obj.pk}:{field_name}"


def encrypt(plaintext: bytes | str, *, context: str, keyring: Keyring | None = None) -> str:
    """`v1:<key id>:<base64url(nonce + ciphertext + tag)>` under the current key."""
    keyring = keyring or keyring_from_settings()
    data = plaintext.encode() if isinstance(plaintext, str) else plaintext
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(keyring.current.key).encrypt(nonce, data, context.encode())
    return f"{VERSION}:{keyring.current.kid}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def token_key_id(token: str) -> str:
    """The id of the key `token` was encrypted under."""
    match = _TOKEN.match(token.strip())
    if match is None:
        raise DecryptionError("not an encrypted value (expected v1:<key id>:<data>)")
    return match["kid"]


def decrypt(token: str, *, context: str, keyring: Keyring | None = None) -> bytes:
    """The plaintext of `token`, or DecryptionError saying why not."""
    keyring = keyring or keyring_from_settings()
    match = _TOKEN.match(token.strip())
    if match is None:
        raise DecryptionError("not an encrypted value (expected v1:<key id>:<data>)")
    if match["version"] != VERSION:
        raise DecryptionError(f"unsupported format {match['version']!r} (this version reads {VERSION})")
    key = keyring.find(match["kid"])
    if key is None:
        raise DecryptionError(
            f"encrypted under key {match['kid']}, which is not configured: set it in MONITORING_ENCRYPTION_KEY "
            f"or MONITORING_ENCRYPTION_OLD_KEYS (configured: {', '.join(configured_key_ids(keyring))})"
        )
    try:
        blob = base64.urlsafe_b64decode(match["data"])
    except (binascii.Error, ValueError):
        raise DecryptionError("the encrypted data is not valid base64") from None
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("the encrypted data is too short to be a value")
    try:
        return AESGCM(key.key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode())
    except InvalidTag:
        raise DecryptionError(
            f"the value does not authenticate under key {key.kid} for {context}: "
            "it was altered, or copied from another row"
        ) from None


def needs_reencryption(token: str, keyring: Keyring | None = None) -> bool:
    """Whether `token` is under an old key (what rotation re-encrypts)."""
    keyring = keyring or keyring_from_settings()
    return token_key_id(token) != keyring.current.kid


def reencrypt(token: str, *, context: str, keyring: Keyring | None = None) -> str:
    """`token` decrypted and encrypted again under the current key (a fresh nonce)."""
    keyring = keyring or keyring_from_settings()
    return encrypt(decrypt(token, context=context, keyring=keyring), context=context, keyring=keyring)


def configured_key_ids(keyring: Keyring | None = None) -> tuple[str, ...]:
    """The ids of every configured key, the current one first."""
    keyring = keyring or keyring_from_settings()
    return tuple(k.kid for k in (keyring.current, *keyring.old))
