"""The Prometheus HTTP API v1 read endpoints (what Grafana's Prometheus data source and
promtool call): query, query_range, series, labels, label values, metadata, buildinfo.
Answers use Prometheus' envelopes exactly: values as strings, times as float seconds,
errors as {"status": "error", "errorType": ..., "error": ...} with its status codes."""

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps

import numpy as np
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from monitoring.apikeys import find_api_key
from monitoring.auth import LAST_USED_RESOLUTION, FailedKeyLimiter, key_from_request
from monitoring.choices import Role
from monitoring.roles import has_role

from . import metadata
from .ast import Aggregation, Node, ValueType, unwrap
from .errors import BadDataError, PromQLError
from .evaluator import Evaluator, query_steps
from .lexer import DURATION_UNITS
from .parser import LABEL_NAME, parse_expr, parse_selector
from .values import Matrix, Scalar, String, label_key

MAX_POINTS = 11_000  # per series in a range query, as Prometheus
# What buildinfo reports: the Prometheus release whose query semantics this follows.
PROMETHEUS_VERSION = "2.42.0"
DURATION_RE = re.compile(r"^(?:\d+[a-z]+)+$")


# --- envelopes ------------------------------------------------------------------------------


def success(data: object) -> HttpResponse:
    return HttpResponse(
        json.dumps({"status": "success", "data": data}, separators=(",", ":")), content_type="application/json"
    )


def error(error_type: str, message: str, status: int) -> HttpResponse:
    body = {"status": "error", "errorType": error_type, "error": message}
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


def format_timestamp(ms: int) -> str:
    """Epoch ms as Prometheus writes a time: seconds, and .fff only when there are ms."""
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    seconds, fraction = divmod(ms, 1000)
    return f"{sign}{seconds}.{fraction:03d}" if fraction else f"{sign}{seconds}"


def _format_slow(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        return repr(value)  # Python's repr is in exponent form there, spelt as Go's 'e' format
    return np.format_float_positional(value, trim="-")


def format_values(values: list[float]) -> list[str]:
    """Floats as Prometheus writes them (Go's shortest 'f' format, 'e' below 1e-6 and from
    1e21 on, NaN, +Inf, -Inf). repr() is right but for a trailing ".0", which one replace
    over the joined texts removes; exponents, inf and nan take the slow path, one by one."""
    texts = list(map(repr, values))
    joined = "\x00".join(texts) + "\x00"  # repr never writes a NUL
    if "e" in joined or "n" in joined:
        return [
            _format_slow(value) if "e" in text or "n" in text else text.removesuffix(".0")
            for text, value in zip(texts, values, strict=True)
        ]
    return joined.replace(".0\x00", "\x00").split("\x00")[:-1]


def _is_whole(values: np.ndarray) -> bool:
    """Finite whole numbers below 1e15 and no -0 (which Go writes as "-0"): their text is
    the integer's."""
    return bool(
        len(values)
        and np.isfinite(values).all()
        and (np.abs(values) < 1e15).all()
        and (values == np.trunc(values)).all()
        and not np.signbit(values).any(where=values == 0)
    )


def points_template(stamps_ms: np.ndarray) -> list[str]:
    """`[<time>,"%s"]` for each time: the JSON of a series' points is the join of the
    templates of its times, `%` its value texts (see series_points)."""
    return [f'[{format_timestamp(ms)},"%s"]' for ms in stamps_ms.tolist()]


def series_points(template: str, values: np.ndarray) -> str:
    """The points of one series as JSON text: `template` (points_template's parts of the
    series' times joined by commas) filled with the values as Prometheus writes them.
    One `%` over the whole series does in C what a text per value and a join did in
    Python: whole numbers go in as ints; other floats as repr(), right but for a trailing
    ".0" (removed in the filled text, where every value ends with `"]`), and exponents,
    NaN and infinities (an "e" or "n" in the text; the template has no letter) take
    format_values' slow path."""
    if _is_whole(values):
        return template % tuple(values.astype(np.int64).tolist())
    floats = values.tolist()
    text = template % tuple(floats)
    if "e" in text or "n" in text:
        return template % tuple(format_values(floats))
    return text.replace('.0"]', '"]')


def format_value(value: float) -> str:
    return format_values([float(value)])[0]


# --- parameters -----------------------------------------------------------------------------


def _param(request: HttpRequest, name: str) -> str:
    # As Go's FormValue: a form body's value wins over the URL's.
    return request.POST.get(name) or request.GET.get(name) or ""


def _params(request: HttpRequest, name: str) -> list[str]:
    return request.POST.getlist(name) + request.GET.getlist(name)


def parse_time(text: str, parameter: str) -> int:
    """A time in epoch ms from Unix seconds (`1435781451.781`) or RFC 3339."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            whole = math.trunc(seconds)
            return whole * 1000 + round((seconds - whole) * 1000)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadDataError(f'invalid parameter "{parameter}": cannot parse "{text}" to a valid timestamp') from None
    if parsed.tzinfo is None or "T" not in text.upper():
        raise BadDataError(f'invalid parameter "{parameter}": cannot parse "{text}" to a valid timestamp')
    return (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def parse_duration(text: str, parameter: str) -> int:
    """A duration in ms from float seconds (`15`, `0.5`) or a Prometheus duration (`1m30s`)."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and abs(seconds) < 2**63 / 1e9:
            return math.trunc(seconds * 1000)
        raise BadDataError(f'invalid parameter "{parameter}": cannot parse "{text}" to a valid duration')
    total = _prometheus_duration(text)
    if total is None:
        raise BadDataError(f'invalid parameter "{parameter}": cannot parse "{text}" to a valid duration')
    return total


def _prometheus_duration(text: str) -> int | None:
    if not DURATION_RE.match(text):
        return None
    total, rest, next_unit = 0, text, 0
    while rest:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        number, rest = int(rest[:digits]), rest[digits:]
        for index in range(next_unit, len(DURATION_UNITS)):
            unit, length = DURATION_UNITS[index]
            if rest.startswith(unit) and not (unit == "m" and rest.startswith("ms")):
                total += number * length
                rest = rest[len(unit) :]
                next_unit = index + 1
                break
        else:
            return None
    return total


def _now_ms() -> int:
    return round(time.time() * 1000)


def _deadline(request: HttpRequest) -> float:
    timeout_s = settings.PROMQL_QUERY_TIMEOUT
    raw = _param(request, "timeout")
    if raw:
        timeout_s = min(timeout_s, parse_duration(raw, "timeout") / 1000)
    return time.monotonic() + timeout_s


def _time_bounds(request: HttpRequest) -> tuple[int | None, int | None]:
    start = _param(request, "start")
    end = _param(request, "end")
    start_ms = parse_time(start, "start") if start else None
    end_ms = parse_time(end, "end") if end else None
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise BadDataError("end timestamp must not be before start time")
    return start_ms, end_ms


# --- authentication -----------------------------------------------------------------------


def _basic_auth_password(request: HttpRequest) -> str | None:
    """The password of `Authorization: Basic`: clients that only speak basic auth (promtool
    2.42's instant queries, a Grafana data source set to basic auth) send the key there."""
    scheme, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def refuse_unauthorized(request: HttpRequest) -> HttpResponse | None:
    """None when the caller may read: an API key (X-API-Key, Bearer, or as the basic-auth
    password) or a dashboard session of a viewer or higher, or anyone when
    MONITORING_PROMETHEUS_ANONYMOUS is set. A key that is sent must be valid."""
    plain = key_from_request(request) or _basic_auth_password(request)
    if plain:
        limiter = FailedKeyLimiter(request)
        wait = limiter.retry_after()
        if wait is not None:
            response = error("throttled", "Too many requests with a wrong API key from this address.", 429)
            response["Retry-After"] = str(wait)
            return response
        key = find_api_key(plain)
        if key is None or not key.user.is_active:
            limiter.record_failure()
            return _unauthorized("Invalid, revoked or expired API key.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            type(key).objects.filter(pk=key.pk).update(last_used_at=now)
        user = key.user
    else:
        user = request.user
        if not user.is_authenticated:
            if settings.MONITORING_PROMETHEUS_ANONYMOUS:
                return None
            return _unauthorized("Send an API key: Authorization: Bearer <key> or X-API-Key.")
    if not has_role(user, Role.VIEWER):
        return error("forbidden", "This needs the viewer role or higher.", 403)
    return None


def _unauthorized(message: str) -> HttpResponse:
    response = error("unauthorized", message, 401)
    response["WWW-Authenticate"] = 'Bearer realm="prometheus"'
    return response


def prometheus_endpoint(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """GET and form-encoded POST (as Prometheus takes them; no CSRF token, since clients
    send API keys), authenticated, with query errors answered in Prometheus' envelope."""

    @csrf_exempt
    @require_http_methods(["GET", "POST"])
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        refusal = refuse_unauthorized(request)
        if refusal is not None:
            return refusal
        try:
            return view(request, *args, **kwargs)
        except PromQLError as exc:
            return error(exc.error_type, str(exc), exc.status)

    return wrapper


# --- queries ------------------------------------------------------------------------------


def _parse_query(request: HttpRequest) -> Node:
    try:
        return parse_expr(_param(request, "query"))
    except BadDataError as exc:
        raise type(exc)(f'invalid parameter "query": {exc}') from None


def _evaluator(steps: np.ndarray, request: HttpRequest) -> Evaluator:
    return Evaluator(steps, deadline=_deadline(request), max_samples=settings.PROMQL_MAX_SAMPLES)


def _vector_order(node: Node, result: list[tuple[dict, float]]) -> list[tuple[dict, float]]:
    """Instant results sorted by labels, or by value for a top-level topk/bottomk."""
    top = unwrap(node)
    if isinstance(top, Aggregation) and top.op in ("topk", "bottomk"):
        descending = top.op == "topk"

        def by_value(item: tuple[dict, float]) -> tuple:
            value = item[1]
            return (math.isnan(value), -value if descending else value)

        return sorted(result, key=by_value)
    return sorted(result, key=lambda item: label_key(item[0]))


@prometheus_endpoint
def query_view(request: HttpRequest) -> HttpResponse:
    """GET|POST /api/v1/query: an instant query at `time` (default now)."""
    node = _parse_query(request)
    raw_time = _param(request, "time")
    at_ms = parse_time(raw_time, "time") if raw_time else _now_ms()
    steps = np.array([at_ms], dtype=np.int64)
    value = _evaluator(steps, request).eval(node)
    at = format_timestamp(at_ms)
    if isinstance(value, Scalar):
        return _raw_success('{"resultType":"scalar","result":[' + at + ',"' + format_value(value.values[0]) + '"]}')
    if isinstance(value, String):
        return success({"resultType": "string", "result": [json.loads(at), value.value]})
    if isinstance(value, Matrix):
        parts = []
        for data in sorted(value.series, key=lambda item: label_key(item.labels)):
            template = ",".join(points_template(data.ts))
            parts.append(_series_json(data.labels, series_points(template, data.values)))
        return _raw_success('{"resultType":"matrix","result":[' + ",".join(parts) + "]}")
    samples = _vector_order(node, [(item.labels, float(item.values[0])) for item in value.series if item.present[0]])
    texts = format_values([sample_value for _, sample_value in samples])
    parts = [
        '{"metric":' + json.dumps(labels, separators=(",", ":")) + ',"value":[' + at + ',"' + text + '"]}'
        for (labels, _), text in zip(samples, texts, strict=True)
    ]
    return _raw_success('{"resultType":"vector","result":[' + ",".join(parts) + "]}")


def _raw_success(data_json: str) -> HttpResponse:
    return HttpResponse('{"status":"success","data":' + data_json + "}", content_type="application/json")


def _series_json(labels: dict[str, str], points: str) -> str:
    return '{"metric":' + json.dumps(labels, separators=(",", ":")) + ',"values":[' + points + "]}"


@prometheus_endpoint
def query_range_view(request: HttpRequest) -> HttpResponse:
    """GET|POST /api/v1/query_range: the expression at start, start + step, ... end."""
    start_ms = parse_time(_param(request, "start"), "start")
    end_ms = parse_time(_param(request, "end"), "end")
    if end_ms < start_ms:
        raise BadDataError("end timestamp must not be before start time")
    step_ms = parse_duration(_param(request, "step"), "step")
    if step_ms <= 0:
        raise BadDataError("zero or negative query resolution step widths are not accepted. Try a positive integer")
    if (end_ms - start_ms) / step_ms > MAX_POINTS:
        raise BadDataError(
            "exceeded maximum resolution of 11,000 points per timeseries. "
            "Try decreasing the query resolution (?step=XX)"
        )
    node = _parse_query(request)
    if node.type not in (ValueType.SCALAR, ValueType.VECTOR):
        raise BadDataError(
            f'invalid expression type "{node.type.value}" for range query, must be Scalar or instant Vector'
        )
    steps = query_steps(start_ms, end_ms, step_ms)
    value = _evaluator(steps, request).eval(node)
    templates = points_template(steps)
    if isinstance(value, Scalar):
        series = [({}, value.values, np.ones(len(steps), dtype=bool))]
    else:
        series = sorted(
            ((item.labels, item.values, item.present) for item in value.series if item.present.any()),
            key=lambda item: label_key(item[0]),
        )
    # Series present at the same steps (all of them, or all but the first few of a rate())
    # share one template.
    by_presence: dict[bytes, str] = {}
    parts = []
    for labels, values, present in series:
        key = present.tobytes()
        template = by_presence.get(key)
        if template is None:
            template = by_presence[key] = ",".join([templates[index] for index in np.flatnonzero(present).tolist()])
        parts.append(_series_json(labels, series_points(template, values if present.all() else values[present])))
    return _raw_success('{"resultType":"matrix","result":[' + ",".join(parts) + "]}")


# --- metadata endpoints -------------------------------------------------------------------


def _selectors(request: HttpRequest, *, required: bool) -> list:
    matches = _params(request, "match[]")
    if required and not matches:
        raise BadDataError("no match[] parameter provided")
    selectors = []
    for text in matches:
        try:
            selectors.append(parse_selector(text))
        except BadDataError as exc:
            raise BadDataError(f'invalid parameter "match[]": {exc}') from None
    return selectors


@prometheus_endpoint
def series_view(request: HttpRequest) -> HttpResponse:
    """GET|POST /api/v1/series: the label sets of the series matching any match[] that
    have samples in [start, end] (all of time when not given)."""
    selectors = _selectors(request, required=True)
    start_ms, end_ms = _time_bounds(request)
    return success(metadata.series_labels(selectors, start_ms, end_ms))


@prometheus_endpoint
def labels_view(request: HttpRequest) -> HttpResponse:
    """GET|POST /api/v1/labels: the label names in use (of the match[] series if given)."""
    selectors = _selectors(request, required=False)
    start_ms, end_ms = _time_bounds(request)
    return success(metadata.label_names(selectors, start_ms, end_ms))


@prometheus_endpoint
def label_values_view(request: HttpRequest, name: str) -> HttpResponse:
    """GET /api/v1/label/<name>/values: the values of one label (`__name__`: metric names)."""
    if not LABEL_NAME.fullmatch(name):
        raise BadDataError(f'invalid label name: "{name}"')
    selectors = _selectors(request, required=False)
    start_ms, end_ms = _time_bounds(request)
    return success(metadata.label_values(name, selectors, start_ms, end_ms))


@prometheus_endpoint
def metadata_view(request: HttpRequest) -> HttpResponse:
    """GET /api/v1/metadata: type, help and unit per metric family."""
    raw_limit = _param(request, "limit")
    try:
        limit = int(raw_limit) if raw_limit else -1
    except ValueError:
        raise BadDataError("limit must be a number") from None
    return success(metadata.families(_param(request, "metric") or None, limit))


@prometheus_endpoint
def buildinfo_view(request: HttpRequest) -> HttpResponse:
    """GET /api/v1/status/buildinfo: Grafana reads the version to pick the features it uses."""
    return success(
        {
            "version": PROMETHEUS_VERSION,
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        }
    )


@prometheus_endpoint
def exemplars_view(request: HttpRequest) -> HttpResponse:
    """GET|POST /api/v1/query_exemplars: no exemplars are stored; an empty answer keeps a
    Grafana panel with exemplars switched on working."""
    _parse_query(request)
    return success([])
