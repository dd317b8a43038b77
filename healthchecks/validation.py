"""Validation of a health check's kind-specific configuration: the reasons, in words a
person can act on, why a check cannot run. The admin, the API and import_config share it."""

import ipaddress
import os
import re
import shlex
import shutil
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .choices import CheckKind

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DNS_RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "SRV", "PTR", "SOA", "CAA")
MAX_PING_PACKETS = 100

# The settings each kind understands; anything else is most likely a typo that would
# otherwise be ignored silently ("expected_stauts").
KNOWN_KEYS: dict[str, frozenset[str]] = {
    CheckKind.HTTP: frozenset(
        {
            "url",
            "method",
            "headers",
            "body",
            "expected_status",
            "expected_content",
            "expected_regex",
            "max_response_time",
            "follow_redirects",
            "verify_tls",
            "ca_file",
            "timeout",
        }
    ),
    CheckKind.TCP: frozenset({"host", "port", "timeout"}),
    CheckKind.PING: frozenset({"host", "packet_count", "timeout"}),
    CheckKind.CUSTOM: frozenset({"command", "timeout"}),
    CheckKind.HEARTBEAT: frozenset({"timeout"}),
    CheckKind.TLS_CERTIFICATE: frozenset(
        {"host", "port", "server_name", "warning_days", "critical_days", "verify", "ca_file", "timeout"}
    ),
    CheckKind.DNS: frozenset({"name", "record_type", "expected", "nameserver", "port", "timeout"}),
}

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_-]{1,63})*\.?$")


def is_valid_host(host: Any) -> bool:
    """A DNS name or an IPv4/IPv6 address (IPv6 with or without brackets)."""
    if not isinstance(host, str) or not host:
        return False
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(candidate)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))


def is_valid_http_url(url: Any) -> bool:
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    del port
    return parts.scheme in ("http", "https") and bool(parts.hostname) and is_valid_host(parts.hostname)


def command_argv(command: Any) -> list[str]:
    """The argument list of a custom command: a list as given, a string split like a shell
    would split words (quotes respected) but never run by one."""
    if isinstance(command, str):
        return shlex.split(command)
    if isinstance(command, (list, tuple)) and all(isinstance(part, str) for part in command):
        return list(command)
    raise ValueError("custom command must be a string or a list of strings")


def resolve_program(program: str) -> str | None:
    """The executable file a command's first word names, or None. A bare name is looked
    up on PATH, as exec would."""
    if os.sep in program:
        return program if os.path.isfile(program) and os.access(program, os.X_OK) else None
    return shutil.which(program)


def split_host_port(endpoint: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port`, a bare host, or a URL's host and port."""
    endpoint = endpoint.strip()
    if "://" in endpoint:
        try:
            parts = urlsplit(endpoint)
            return parts.hostname or "", parts.port
        except ValueError:
            return "", None
    if endpoint.startswith("["):
        host, _, rest = endpoint[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    if endpoint.count(":") == 1:
        host, _, port = endpoint.partition(":")
        return host, int(port) if port.isdigit() else None
    return endpoint, None


def _number(config: Mapping, key: str, errors: list[str], *, minimum: float = 0, integer: bool = False) -> None:
    if key not in config or config[key] is None:
        return
    value = config[key]
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        errors.append(f"{key} must be {'an integer' if integer else 'a number'}, not {value!r}")
    elif value <= minimum if minimum == 0 else value < minimum:
        errors.append(f"{key} must be {'greater than 0' if minimum == 0 else f'at least {minimum}'}, not {value!r}")


def _bool(config: Mapping, key: str, errors: list[str]) -> None:
    if key in config and not isinstance(config[key], bool):
        errors.append(f"{key} must be true or false, not {config[key]!r}")


def _port(config: Mapping, key: str, errors: list[str], *, required: bool) -> None:
    value = config.get(key)
    if value is None:
        if required:
            errors.append(f"{key} is required")
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        errors.append(f"{key} {value!r} is not a port number (1-65535)")


def _ca_file(config: Mapping, errors: list[str]) -> None:
    path = config.get("ca_file")
    if path is None:
        return
    if not isinstance(path, str) or not os.path.isfile(path) or not os.access(path, os.R_OK):
        errors.append(f"ca_file {path!r} does not exist or is not readable")


def _host(config: Mapping, errors: list[str], endpoint: str | None, *, key: str = "host") -> None:
    value = config.get(key)
    if value is None:
        if endpoint is not None and not split_host_port(endpoint)[0]:
            errors.append(f"{key} is required (in the check's config or its target's endpoint)")
        return
    if not is_valid_host(value):
        errors.append(f"host {value!r} is not a valid host name or IP address")


def parse_expected_status(value: Any) -> list[tuple[int, int]]:
    """Expected status codes as inclusive ranges: 200, [200, 204], "200-299", "2xx",
    or a list mixing them. Raises ValueError with a readable reason."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("expected_status must not be an empty list")
    ranges: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"expected_status {item!r} is not a status code")
        if isinstance(item, int):
            low = high = item
        elif isinstance(item, str) and re.fullmatch(r"[1-5]xx", item.strip().lower()):
            low = int(item.strip()[0]) * 100
            high = low + 99
        elif isinstance(item, str) and re.fullmatch(r"\s*\d{3}\s*-\s*\d{3}\s*", item):
            low, high = (int(part) for part in item.split("-"))
        elif isinstance(item, str) and item.strip().isdigit():
            low = high = int(item)
        else:
            raise ValueError(f"expected_status {item!r} is not a status code, a range like '200-299' or '2xx'")
        if not (100 <= low <= high <= 599):
            raise ValueError(f"expected_status {item!r} is outside 100-599")
        ranges.append((low, high))
    return ranges


def _http(config: Mapping, errors: list[str], endpoint: str | None) -> None:
    url = config.get("url")
    if url is None:
        if endpoint is not None and not endpoint:
            errors.append("url is required (in the check's config or its target's endpoint)")
        elif endpoint and not is_valid_http_url(endpoint):
            errors.append(f"target endpoint {endpoint!r} is not a valid http(s) URL")
    elif not is_valid_http_url(url):
        errors.append(f"url {url!r} is not a valid http(s) URL")
    method = config.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        errors.append(f"method {method!r} is not one of {', '.join(HTTP_METHODS)}")
    headers = config.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in headers.items()
    ):
        errors.append("headers must be a mapping of header names to values")
    body = config.get("body")
    if body is not None and not isinstance(body, (str, dict, list)):
        errors.append("body must be text or JSON (a mapping or a list)")
    if "expected_status" in config:
        try:
            parse_expected_status(config["expected_status"])
        except ValueError as exc:
            errors.append(str(exc))
    content = config.get("expected_content")
    if content is not None and not isinstance(content, str):
        errors.append("expected_content must be text")
    regex = config.get("expected_regex")
    if regex is not None:
        if not isinstance(regex, str):
            errors.append("expected_regex must be text")
        else:
            try:
                re.compile(regex)
            except re.error as exc:
                errors.append(f"expected_regex {regex!r} is not a valid regular expression: {exc}")
    _number(config, "max_response_time", errors)
    _bool(config, "follow_redirects", errors)
    _bool(config, "verify_tls", errors)
    _ca_file(config, errors)


def _custom(config: Mapping, errors: list[str]) -> None:
    command = config.get("command")
    if command in (None, "", []):
        errors.append("command is required")
        return
    try:
        argv = command_argv(command)
    except ValueError as exc:
        errors.append(f"custom command {command!r} cannot be split into arguments: {exc}")
        return
    if not argv:
        errors.append("command is required")
        return
    if resolve_program(argv[0]) is None:
        errors.append(f"custom command {argv[0]!r} does not exist or is not executable")


def _dns(config: Mapping, errors: list[str], endpoint: str | None) -> None:
    name = config.get("name")
    if name is None:
        if endpoint is not None and not split_host_port(endpoint)[0]:
            errors.append("name is required (in the check's config or its target's endpoint)")
    elif not isinstance(name, str) or not is_valid_host(name):
        errors.append(f"name {name!r} is not a valid DNS name")
    record_type = config.get("record_type", "A")
    if not isinstance(record_type, str) or record_type.upper() not in DNS_RECORD_TYPES:
        errors.append(f"record_type {record_type!r} is not one of {', '.join(DNS_RECORD_TYPES)}")
    expected = config.get("expected")
    if expected is not None and not (
        isinstance(expected, str) or (isinstance(expected, list) and all(isinstance(e, str) for e in expected))
    ):
        errors.append("expected must be an answer or a list of answers")
    nameserver = config.get("nameserver")
    if nameserver is not None:
        try:
            ipaddress.ip_address(nameserver)
        except (ValueError, TypeError):
            errors.append(f"nameserver {nameserver!r} is not an IP address")
    _port(config, "port", errors, required=False)


def _tls(config: Mapping, errors: list[str], endpoint: str | None) -> None:
    _host(config, errors, endpoint)
    _port(config, "port", errors, required=False)
    server_name = config.get("server_name")
    if server_name is not None and not is_valid_host(server_name):
        errors.append(f"server_name {server_name!r} is not a valid host name")
    _number(config, "warning_days", errors, minimum=0.0001)
    _number(config, "critical_days", errors, minimum=0.0001)
    warning, critical = config.get("warning_days", 30), config.get("critical_days", 7)
    if isinstance(warning, (int, float)) and isinstance(critical, (int, float)) and critical > warning:
        errors.append(f"critical_days ({critical}) must not be more than warning_days ({warning})")
    _bool(config, "verify", errors)
    _ca_file(config, errors)


def check_config_errors(kind: str, config: dict, *, endpoint: str | None = None) -> list[str]:
    """Why a check of `kind` with `config` cannot run; an empty list means it is valid.

    `endpoint` is the target's endpoint when the caller knows it: then a check that takes
    its url or host from the target is refused when neither is set. Without it (None) only
    the settings present are judged, so a config file's check that relies on its target
    passes."""
    if kind not in CheckKind.values:
        return [f"check type {kind!r} is not one of {', '.join(CheckKind.values)}"]
    if not isinstance(config, dict):
        return ["config must be a mapping of settings"]
    errors: list[str] = []
    unknown = sorted(set(config) - KNOWN_KEYS[kind])
    if unknown:
        known = ", ".join(sorted(KNOWN_KEYS[kind]))
        errors.append(f"unknown setting(s) {', '.join(map(repr, unknown))} for a {kind} check (known: {known})")
    _number(config, "timeout", errors)
    if kind == CheckKind.HTTP:
        _http(config, errors, endpoint)
    elif kind == CheckKind.TCP:
        _host(config, errors, endpoint)
        if config.get("port") is None and endpoint is not None and split_host_port(endpoint)[1] is None:
            errors.append("port is required (in the check's config or its target's endpoint as host:port)")
        _port(config, "port", errors, required=False)
    elif kind == CheckKind.PING:
        _host(config, errors, endpoint)
        _number(config, "packet_count", errors, integer=True)
        count = config.get("packet_count")
        if isinstance(count, int) and not isinstance(count, bool) and count > MAX_PING_PACKETS:
            errors.append(f"packet_count must be at most {MAX_PING_PACKETS}, not {count}")
    elif kind == CheckKind.CUSTOM:
        _custom(config, errors)
    elif kind == CheckKind.TLS_CERTIFICATE:
        _tls(config, errors, endpoint)
    elif kind == CheckKind.DNS:
        _dns(config, errors, endpoint)
    return errors
