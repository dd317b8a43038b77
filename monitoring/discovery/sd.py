"""Prometheus file_sd and http_sd: a JSON list of `{"targets": ["host:port"], "labels": {...}}`
groups becomes `prometheus` targets (`__scheme__` and `__metrics_path__` shape the URL, as in
Prometheus; other `__` labels are dropped). Files are re-read when they change."""

import glob
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .. import outbound
from ..choices import DiscoverySource, TargetKind
from ..ingest import LABEL_NAME_RE
from .services import Finding

log = logging.getLogger("discovery")

HTTP_SD_TIMEOUT_S = 10.0
MAX_SD_BYTES = 16 * 1024 * 1024
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class SdError(Exception):
    """A file_sd/http_sd document that cannot be used, with the reason."""


@dataclass(frozen=True)
class SdListing:
    """What one source listed now; `complete` is False when a file or URL could not be
    read, so the caller must not take absent targets as removed."""

    findings: tuple[Finding, ...]
    complete: bool
    changed: bool  # whether any file's content changed since this process last read it
    errors: tuple[str, ...] = ()


def parse_sd(document: Any, *, source: DiscoverySource, origin: str) -> list[Finding]:
    """The targets of a Prometheus SD document. Raises SdError naming the problem's place."""
    if not isinstance(document, list):
        raise SdError("the document must be a JSON list of target groups")
    findings: dict[str, Finding] = {}
    for index, group in enumerate(document):
        where = f"[{index}]"
        if not isinstance(group, dict) or not isinstance(group.get("targets"), list):
            raise SdError(f'{where}: a target group is an object with a "targets" list')
        labels = group.get("labels") or {}
        if not isinstance(labels, dict):
            raise SdError(f"{where}.labels: must be an object of strings")
        for name, value in labels.items():
            if not isinstance(name, str) or not LABEL_NAME_RE.fullmatch(name) or not isinstance(value, str):
                raise SdError(f"{where}.labels.{name}: label names match [a-zA-Z_][a-zA-Z0-9_]*, values are strings")
        scheme = labels.get("__scheme__", "http")
        path = labels.get("__metrics_path__", "/metrics")
        if scheme not in ("http", "https"):
            raise SdError(f"{where}.labels.__scheme__: {scheme!r} is not http or https")
        if not path.startswith("/"):
            raise SdError(f"{where}.labels.__metrics_path__: {path!r} must start with /")
        kept = {name: value for name, value in labels.items() if not name.startswith("__") and value != ""}
        for position, address in enumerate(group["targets"]):
            if not isinstance(address, str) or not _ADDRESS.match(address) or int(address.rsplit(":", 1)[1]) > 65535:
                raise SdError(f"{where}.targets[{position}]: {address!r} is not host:port")
            job = kept.get("job")
            findings[address] = Finding(
                source=source,
                identity=f"{source.value}:{address}",
                kind=TargetKind.PROMETHEUS,
                name=f"{job} {address}" if job else address,
                endpoint=f"{scheme}://{address}{path}",
                labels=kept,
                details={"listed_in": origin},
            )
    return list(findings.values())


# path -> (sha256 of the content, its findings): a file is parsed again only when it changed.
_file_cache: dict[str, tuple[str, list[Finding]]] = {}


def read_file_sd(patterns: Iterable[str]) -> SdListing:
    """Every target of the files matching `patterns` (globs). A file that cannot be read or
    parsed makes the listing incomplete (its earlier targets are kept)."""
    findings: list[Finding] = []
    errors: list[str] = []
    changed = False
    seen_paths = set()
    for pattern in patterns:
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        for path in paths:
            seen_paths.add(path)
            try:
                content = Path(path).read_bytes()[: MAX_SD_BYTES + 1]
                if len(content) > MAX_SD_BYTES:
                    raise SdError(f"larger than {MAX_SD_BYTES} bytes")
                digest = hashlib.sha256(content).hexdigest()
                cached = _file_cache.get(path)
                if cached is not None and cached[0] == digest:
                    findings.extend(cached[1])
                    continue
                try:
                    document = json.loads(content)
                except ValueError as exc:
                    raise SdError(f"not JSON: {exc}") from None
                parsed = parse_sd(document, source=DiscoverySource.FILE_SD, origin=path)
            except (OSError, SdError) as exc:
                errors.append(f"{path}: {exc}")
                log.warning("file_sd %s skipped: %s", path, exc)
                continue
            _file_cache[path] = (digest, parsed)
            changed = True
            findings.extend(parsed)
    for path in set(_file_cache) - seen_paths:  # a file that is gone lists nothing now
        del _file_cache[path]
        changed = True
    return SdListing(tuple(findings), complete=not errors, changed=changed, errors=tuple(errors))


def fetch_http_sd(urls: Iterable[str], *, timeout: float = HTTP_SD_TIMEOUT_S) -> SdListing:
    """Every target listed by the http_sd `urls` (GET, JSON, 200), under the outbound policy."""
    findings: list[Finding] = []
    errors: list[str] = []
    with outbound.httpx_client(follow_redirects=True, timeout=timeout) as client:
        for url in urls:
            try:
                response = client.get(url, headers={"Accept": "application/json"})
                if response.status_code != 200:
                    raise SdError(f"HTTP {response.status_code}")
                if len(response.content) > MAX_SD_BYTES:
                    raise SdError(f"larger than {MAX_SD_BYTES} bytes")
                try:
                    document = response.json()
                except ValueError as exc:
                    raise SdError(f"not JSON: {exc}") from None
                findings.extend(parse_sd(document, source=DiscoverySource.HTTP_SD, origin=url))
            except (httpx.HTTPError, OSError, SdError) as exc:
                errors.append(f"{url}: {exc}")
                log.warning("http_sd %s skipped: %s", url, exc)
    return SdListing(tuple(findings), complete=not errors, changed=True, errors=tuple(errors))
