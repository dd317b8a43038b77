"""Small validators for configuration values and a reader that applies a table of them to
a mapping, collecting every problem with its key path instead of stopping at the first."""

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from monitoring.audit import MASK

from .errors import Problem

MAX_INT = 2**31 - 1  # PositiveIntegerField's upper bound on every database
KEY_PATTERN = re.compile(r"^[-a-zA-Z0-9_]{1,100}$")
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
PHONE_NUMBER = re.compile(r"^\+[1-9][0-9]{6,14}$")


class Invalid(Exception):
    """A value that a validator refuses. `where` is a suffix of the key path inside the
    value (`[1]`, `.Authorization`) when the problem is in a part of it."""

    def __init__(self, message: str, where: str = ""):
        super().__init__(message)
        self.message = message
        self.where = where


Validator = Callable[[Any], Any]
_MISSING = object()


def describe(value: Any) -> str:
    """A value's kind in words, for messages ("a list", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def text(max_length: int | None = None, *, required: bool = False) -> Validator:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"{value!r} is not a string")
        if required and not value.strip():
            raise Invalid("must not be empty")
        if max_length is not None and len(value) > max_length:
            raise Invalid(f"is longer than {max_length} characters")
        return value

    return check


def integer(minimum: int = 0) -> Validator:
    words = (
        "a non-negative integer"
        if minimum == 0
        else "a positive integer"
        if minimum == 1
        else f"an integer >= {minimum}"
    )

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_INT:
            raise Invalid(f"{value!r} is not {words}")
        return value

    return check


non_negative = integer(0)
positive = integer(1)


def number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Invalid(f"{value!r} is not a number")
    return value


def seconds(maximum: float) -> Validator:
    """A duration in seconds: a positive number (a fraction allowed), at most `maximum`."""

    def check(value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= maximum:
            raise Invalid(f"{value!r} is not a number of seconds above 0 and at most {maximum:g}")
        return value

    return check


def absolute_path(value: Any) -> str:
    text(1000, required=True)(value)
    if not value.startswith("/") or "\0" in value:
        raise Invalid(f"{value!r} is not an absolute file path")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"{value!r} is not true or false")
    return value


def one_of(choices: Iterable[str]) -> Validator:
    allowed = tuple(choices)

    def check(value: Any) -> str:
        if value not in allowed:
            raise Invalid(f"{value!r} is not one of {' '.join(allowed)}")
        return value

    return check


def port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Invalid(f"{value!r} is not a port number (1-65535)")
    return value


def url(value: Any) -> str:
    text(2000)(value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
        raise Invalid(f"{value!r} is not an http(s) URL")
    return value


def email(value: Any) -> str:
    text(254)(value)
    try:
        validate_email(value)
    except ValidationError:
        raise Invalid(f"{value!r} is not an email address") from None
    return value


def phone_number(value: Any) -> str:
    if not isinstance(value, str) or not PHONE_NUMBER.match(value):
        raise Invalid(f"{value!r} is not a phone number in international form (+ country code and number)")
    return value


def metric_name(value: Any) -> str:
    text(200)(value)
    if not METRIC_NAME.match(value):
        raise Invalid(f"{value!r} is not a metric name (letters, digits, '_' and ':')")
    return value


def key_name(value: Any) -> str:
    if not isinstance(value, str) or not KEY_PATTERN.match(value):
        raise Invalid(f"{value!r} is not a key (1-100 letters, digits, '_' or '-')")
    return value


def as_is(value: Any) -> Any:
    """For a value whose parts the caller checks itself (with their own key paths)."""
    return value


def optional(validator: Validator) -> Validator:
    def check(value: Any) -> Any:
        return None if value is None else validator(value)

    return check


def secret(validator: Validator) -> Validator:
    """A secret value, or the mask an export writes in its place (meaning: keep the
    stored value)."""

    def check(value: Any) -> Any:
        return value if value == MASK else validator(value)

    return check


def list_of(item: Validator, *, unique: bool = False) -> Validator:
    def check(value: Any) -> list:
        if not isinstance(value, list):
            raise Invalid(f"is {describe(value)}, not a list")
        cleaned = []
        for index, element in enumerate(value):
            try:
                cleaned.append(item(element))
            except Invalid as exc:
                raise Invalid(exc.message, f"[{index}]{exc.where}") from None
            if unique and element in value[:index]:
                raise Invalid(f"{element!r} is listed twice", f"[{index}]")
        return cleaned

    return check


def mapping_of(value_validator: Validator) -> Validator:
    """A mapping of string keys to values that `value_validator` accepts."""

    def check(value: Any) -> dict:
        if not isinstance(value, dict):
            raise Invalid(f"is {describe(value)}, not a mapping")
        cleaned = {}
        for key, element in value.items():
            if not isinstance(key, str):
                raise Invalid(f"key {key!r} is not a string")
            try:
                cleaned[key] = value_validator(element)
            except Invalid as exc:
                raise Invalid(exc.message, f".{key}{exc.where}") from None
        return cleaned

    return check


def json_value(value: Any) -> Any:
    """Anything JSON can hold: YAML also makes dates, sets and binary, which a JSON
    column cannot store."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return number(value)
    if isinstance(value, list):
        return list_of(json_value)(value)
    if isinstance(value, dict):
        return mapping_of(json_value)(value)
    hint = "; quote it to keep it as text" if type(value).__name__ in ("date", "datetime") else ""
    raise Invalid(f"{value!r} is {describe(value)}, which cannot be stored{hint}")


@dataclass(frozen=True)
class Field:
    validator: Validator
    required: bool = False
    default: Any = _MISSING

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING


def read_fields(
    data: Any, fields: Mapping[str, Field], path: str, problems: list[Problem], *, fill_defaults: bool = True
) -> dict[str, Any] | None:
    """The cleaned values of `data` by the table `fields`; every problem (wrong type,
    missing required key, unknown key) is appended to `problems` with its key path.
    Returns None when `data` is not a mapping at all."""
    if not isinstance(data, dict):
        problems.append(Problem(path, f"is {describe(data)}, not a mapping"))
        return None
    cleaned: dict[str, Any] = {}
    for name in data:
        if name not in fields:
            problems.append(Problem(join(path, name), f"unknown key (known: {', '.join(fields)})"))
    for name, spec in fields.items():
        if name not in data:
            if spec.required:
                problems.append(Problem(join(path, name), "is required"))
            elif fill_defaults and spec.has_default:
                cleaned[name] = spec.default() if callable(spec.default) else spec.default
            continue
        try:
            cleaned[name] = spec.validator(data[name])
        except Invalid as exc:
            problems.append(Problem(join(path, name) + exc.where, exc.message))
            if fill_defaults and spec.has_default:  # so the caller can go on checking the rest
                cleaned[name] = spec.default() if callable(spec.default) else spec.default
    return cleaned
