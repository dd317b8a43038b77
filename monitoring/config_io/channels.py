"""The keys of a `notifications` section: the channel columns every kind has, and each
kind's settings as its sender declares them (notifications.senders, `settings_keys`), turned
into validators here, so the file accepts exactly what the senders read."""

import os
import re
from collections.abc import Mapping
from typing import Any

from notifications.choices import ChannelKind
from notifications.senders import MAX_TIMEOUT_S, SENDERS, Setting, SettingType

from .errors import Problem
from .fields import (
    Field,
    Invalid,
    Validator,
    absolute_path,
    boolean,
    email,
    list_of,
    mapping_of,
    one_of,
    optional,
    phone_number,
    port,
    positive,
    read_fields,
    seconds,
    secret,
    text,
    url,
)

# Keys every channel section may have besides its kind's settings (columns of the model).
CHANNEL_COMMON_FIELDS = {
    "enabled": Field(boolean, default=True),
    "kind": Field(one_of(ChannelKind.values)),
    "name": Field(text(200, required=True)),
    "rate_limit_per_minute": Field(optional(positive), default=None),
    "template": Field(text(), default=""),
}


def choice_map(keys: tuple[str, ...], choices: tuple[str, ...]) -> Validator:
    """A mapping whose keys are among `keys` and whose values among `choices`."""
    values = mapping_of(one_of(choices))

    def check(value: Any) -> dict:
        cleaned = values(value)
        for key in cleaned:
            if key not in keys:
                raise Invalid(f"{key!r} is not one of {' '.join(keys)}", f".{key}")
        return cleaned

    return check


def setting_validator(setting: Setting) -> Validator:
    """The validator of one declared setting; a secret one also takes the export's mask."""
    kind = setting.type
    required = setting.required
    validators: dict[SettingType, Any] = {
        SettingType.TEXT: lambda: text(setting.max_length, required=required),
        SettingType.URL: lambda: url,
        SettingType.EMAIL: lambda: email,
        SettingType.EMAILS: lambda: list_of(email, unique=True),
        SettingType.PHONE: lambda: phone_number,
        SettingType.PHONES: lambda: list_of(phone_number, unique=True),
        SettingType.PORT: lambda: port,
        SettingType.FLAG: lambda: boolean,
        SettingType.SECONDS: lambda: seconds(MAX_TIMEOUT_S),
        SettingType.CHOICE: lambda: one_of(setting.choices),
        SettingType.CHOICES: lambda: list_of(one_of(setting.choices), unique=True),
        SettingType.CHOICE_MAP: lambda: choice_map(setting.keys, setting.choices),
        SettingType.HEADERS: lambda: mapping_of(text(2000)),
        SettingType.PATH: lambda: absolute_path,
    }
    validator = validators[kind]()
    return secret(validator) if setting.secret else validator


def channel_fields(declared: Mapping[str, Setting]) -> dict[str, Field]:
    return {name: Field(setting_validator(setting), required=setting.required) for name, setting in declared.items()}


CHANNEL_FIELDS: dict[str, dict[str, Field]] = {
    kind: channel_fields(sender.settings_keys) for kind, sender in SENDERS.items()
}


def channel_settings_problems(kind: str, settings: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with a channel's settings (config and secrets merged) by its sender's
    declarations, judged as the import judges a channel section (unknown key, bad value,
    missing required key), for the API and the admin: each problem's path is the key path
    inside the settings (`format`, `recipients[1]`, `headers.X-Token`)."""
    problems: list[Problem] = []
    read_fields(dict(settings), CHANNEL_FIELDS[kind], "", problems, fill_defaults=False)
    return problems


def setting_name(path: str) -> str:
    """The setting a problem's key path is in: `recipients[1]` -> `recipients`."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def channel_warnings(path: str, settings: Mapping[str, Any]) -> list[str]:
    """What will fail on this machine though the file is valid: a CA file that is not there
    (the file may well be written for another machine, so it is a warning, not an error)."""
    ca_file = settings.get("ca_file")
    if ca_file and not os.path.isfile(ca_file):
        return [f"{path}.ca_file: {ca_file} is not a file on this machine; TLS connections of this channel fail"]
    return []
