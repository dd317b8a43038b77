"""Push endpoints of the ingestion path: `POST /api/metrics` (a JSON batch) and
`POST /api/metrics/prometheus` (the Prometheus text exposition format). Both read the body
themselves (size limit, gzip) and answer with counts of accepted and rejected samples."""

import gc
import json
import logging
import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from prometheus_client.parser import text_string_to_metric_families
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .api_frame import error_body, ok
from .discovery.devices import devices_in_samples, note_devices_seen
from .ingest import (
    LABEL_NAME_RE,
    IngestResult,
    Rejection,
    RejectReason,
    SampleIn,
    count_rejected,
    ingest_samples,
)
from .permissions import IsViewer

log = logging.getLogger("ingest")

# At most this many rejections are listed in a response; `rejected` still counts them all.
MAX_ERRORS_LISTED = 1000
# Prometheus's spellings of the special values, accepted where JSON has no literal for them.
SPECIAL_VALUES = {"NaN": math.nan, "+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf}


# --- Schema of the push API (the handlers read the body themselves, without these) -------


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "string", "enum": sorted(SPECIAL_VALUES)}]})
class PushValueField(serializers.Field):
    """A number, or NaN, +Inf, Inf, -Inf as strings (JSON has no literal for them)."""


class PushSampleSerializer(serializers.Serializer):
    metric = serializers.CharField(help_text="Metric name, [a-zA-Z_:][a-zA-Z0-9_:]*.")
    labels = serializers.DictField(child=serializers.CharField(), required=False)
    value = PushValueField()
    timestamp = serializers.FloatField(required=False, help_text="Epoch seconds (default: now).")


class PushRequestSerializer(serializers.Serializer):
    samples = PushSampleSerializer(many=True)


class PushRejectionSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The sample's position in the request.")
    reason = serializers.ChoiceField(choices=[reason.value for reason in RejectReason])


class PushResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    errors = PushRejectionSerializer(many=True, help_text=f"The first {MAX_ERRORS_LISTED} rejections.")


push_json_schema = extend_schema(
    operation_id="metrics_push",
    summary="Push a batch of samples (JSON)",
    request=PushRequestSerializer,
    responses={200: PushResponseSerializer},
)


class BodyError(Exception):
    def __init__(self, http_status: int, message: str):
        super().__init__(message)
        self.http_status = http_status
        self.message = message


def push_permissions() -> list:
    """Any role may push, with a key that is not read-only: a device gets a viewer key,
    which lets it push samples but not acknowledge, silence or configure anything."""
    return [IsViewer()]


def read_body(request: Request) -> bytes:
    """The request body, gunzipped when sent with Content-Encoding: gzip. Raises BodyError
    (413) when the body, before or after decompression, is over MONITORING_MAX_BODY_BYTES."""
    limit = settings.MONITORING_MAX_BODY_BYTES
    too_large = BodyError(413, f"The request body is larger than the server accepts ({limit} bytes).")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BodyError(400, "Content-Length is not a number.") from None
    if declared > limit:
        raise too_large
    stream = request.stream  # the Django request itself, read here without a DRF parser
    raw = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise too_large
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise BodyError(415, f"Content-Encoding {encoding!r} is not supported; send gzip or nothing.")
    # Decompress at most limit + 1 bytes: a small body that inflates without end (a zip
    # bomb) costs no more memory than an honest one.
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BodyError(400, f"The body is not valid gzip: {exc}") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise too_large
    if not inflater.eof:
        raise BodyError(400, "The gzip body is truncated.")
    return body


def _value(raw: object) -> object:
    """A sample value from JSON: a number, or NaN/+Inf/-Inf spelled as Prometheus does.
    Anything else is passed on for ingest to reject as invalid_value."""
    if type(raw) is str:
        return SPECIAL_VALUES.get(raw, raw)
    return raw


def samples_from_json(payload: object) -> tuple[list[SampleIn], list[int], list[Rejection]]:
    """The samples of a JSON push, the request index of each, and the items rejected before
    ingest (not an object). Raises BodyError for a payload without a list of samples."""
    if not isinstance(payload, dict) or not isinstance(payload.get("samples"), list):
        raise BodyError(400, 'The body must be a JSON object with a "samples" list.')
    samples: list[SampleIn] = []
    positions: list[int] = []
    rejected: list[Rejection] = []
    get_value = _value
    for index, item in enumerate(payload["samples"]):
        if type(item) is not dict:
            rejected.append(Rejection(index, RejectReason.INVALID_SAMPLE.value))
            continue
        labels = item.get("labels")
        samples.append(
            SampleIn(
                item.get("metric"),
                {} if labels is None else labels,
                get_value(item.get("value")),
                item.get("timestamp"),
            )
        )
        positions.append(index)
    return samples, positions, rejected


def samples_from_prometheus_text(text: str, extra_labels: dict[str, str]) -> list[SampleIn]:
    """Every sample of a text exposition, with `extra_labels` added (they win over labels of
    the same name in the body, as a Pushgateway's grouping labels do)."""
    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {**sample.labels, **extra_labels} if extra_labels else sample.labels
            timestamp = sample.timestamp
            if timestamp is not None and not isinstance(timestamp, float | int):
                timestamp = float(timestamp.sec) + timestamp.nsec / 1e9
            samples.append(SampleIn(sample.name, labels, sample.value, timestamp))
    return samples


def _answer(result: IngestResult, positions: list[int] | None, early: list[Rejection]) -> Response:
    """The push answer: 200 whenever the batch was processed, even if every sample was
    rejected (sending it again would not help); `errors` lists the rejects by request index."""
    rejected = list(early)
    rejected.extend(
        Rejection(positions[rejection.index] if positions is not None else rejection.index, rejection.reason)
        for rejection in result.rejected
    )
    if early:
        rejected.sort(key=lambda rejection: rejection.index)
    return ok(
        accepted=result.accepted,
        rejected=len(rejected),
        errors=[{"index": r.index, "reason": r.reason} for r in rejected[:MAX_ERRORS_LISTED]],
    )


def _error(exc: BodyError) -> Response:
    return Response(error_body(exc.http_status, exc.message), status=exc.http_status)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is parsed and stored. A 10,000-sample body
    is 20,000 dicts alive at once, enough to start several full collections of the whole
    process (100+ ms each with Django loaded); none of it is cyclic, so reference counting
    frees it all at the end anyway."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def push_json(request: Request) -> Response:
    """POST /api/metrics: `{"samples": [{"metric", "labels", "value", "timestamp"}]}`."""
    with gc_paused():
        try:
            body = read_body(request)
            try:
                payload = json.loads(body)
            except ValueError as exc:  # also UnicodeDecodeError
                raise BodyError(400, f"The body is not valid JSON: {exc}") from None
            samples, positions, early = samples_from_json(payload)
        except BodyError as exc:
            return _error(exc)
        if early:
            count_rejected(rejection.reason for rejection in early)
        result = ingest_samples(samples)
        note_devices_seen(devices_in_samples(samples))  # device self-registration (monitoring.discovery)
        return _answer(result, positions, early)


class PrometheusPushView(APIView):
    """POST /api/metrics/prometheus: a body in the Prometheus text exposition format;
    labels in the query string (`?job=devices&instance=d-17`) are added to every sample."""

    throttle_scope = "ingest"

    def get_permissions(self):
        return push_permissions()

    @extend_schema(
        operation_id="metrics_push_prometheus",
        summary="Push samples in the Prometheus text exposition format",
        request={"text/plain": OpenApiTypes.STR},
        parameters=[
            OpenApiParameter(
                "labels",
                {"type": "object", "additionalProperties": {"type": "string"}},
                style="form",
                explode=True,
                description="Any query parameter is a label added to every sample (`?job=devices&instance=d-17`).",
            )
        ],
        responses={200: PushResponseSerializer},
    )
    def post(self, request: Request) -> Response:
        extra_labels = {}
        for name, value in request.query_params.items():
            if not LABEL_NAME_RE.fullmatch(name) or name.startswith("__"):
                return _error(BodyError(400, f"{name!r} in the query string is not a valid label name."))
            extra_labels[name] = value
        with gc_paused():
            try:
                body = read_body(request)
                try:
                    text = body.decode()
                except UnicodeDecodeError:
                    raise BodyError(400, "The body is not UTF-8 text.") from None
                try:
                    samples = samples_from_prometheus_text(text, extra_labels)
                except (ValueError, TypeError, IndexError) as exc:
                    raise BodyError(400, f"The body is not in the Prometheus text format: {exc}") from None
            except BodyError as exc:
                return _error(exc)
            result = ingest_samples(samples)
            note_devices_seen(devices_in_samples(samples))  # device self-registration (monitoring.discovery)
            return _answer(result, None, [])
