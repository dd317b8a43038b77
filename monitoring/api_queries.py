"""Metric queries of `GET /api/metrics`: without a time range, the matching series with
their last value; with `hours` or `start`/`end`, the points of each matching series."""

import math
import re
import time
from datetime import datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from .api_frame import ok
from .api_pagination import MAX_OFFSET, page_links
from .queries import (
    MAX_POINTS_PER_SERIES,
    Point,
    QueryError,
    RangeResult,
    SeriesInfo,
    SeriesPage,
    SeriesSelector,
    list_series,
    query_range,
)

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 100, 10_000
RANGE_LIMIT_DEFAULT, RANGE_LIMIT_MAX = 20, 200
NON_FINITE = {"NaN", "+Inf", "-Inf"}
MAX_EPOCH_SECONDS = 1e11  # year 5138: anything later is a unit mistake (ms or µs)
# Parameters DRF itself reads; everything else unknown is refused, so a typo such as
# `metrics=` cannot silently return every series.
FRAMEWORK_PARAMETERS = {"format"}


def format_value(value: float | None) -> float | str | None:
    """A sample value for JSON, which has no NaN or infinities: those are written as the
    strings Prometheus's HTTP API uses."""
    if value is None or math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def format_ts(ts_ms: int | None) -> float | None:
    return None if ts_ms is None else ts_ms / 1000


# --- Input ------------------------------------------------------------------------------


class TimeField(serializers.Field):
    """An instant as RFC 3339 (with an offset) or epoch seconds; returns epoch ms."""

    default_error_messages = {
        "invalid": "Use RFC 3339 with a timezone (2025-11-29T01:33:20Z) or epoch seconds.",
        "naive": "An RFC 3339 time needs a timezone offset (Z or +HH:MM).",
    }

    def to_internal_value(self, data) -> int:
        text = str(data).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                self.fail("invalid")
            if moment.tzinfo is None:
                self.fail("naive")
            return round(moment.timestamp() * 1000)
        if not 0 <= seconds <= MAX_EPOCH_SECONDS:
            self.fail("invalid")
        return round(seconds * 1000)


class LabelMatcherField(serializers.CharField):
    """`key:value`, an exact label matcher (label names have no colon, values may)."""

    def to_internal_value(self, data) -> tuple[str, str]:
        text = super().to_internal_value(data)
        key, sep, value = text.partition(":")
        if not sep or not LABEL_NAME_RE.match(key):
            raise ValidationError(f"{text!r} is not key:value with a valid label name.")
        return key, value


class MetricsQuerySerializer(serializers.Serializer):
    metric = serializers.RegexField(METRIC_NAME_RE, required=False, help_text="Exact metric name.")
    label = serializers.ListField(
        child=LabelMatcherField(),
        required=False,
        help_text="Exact label matcher `key:value`; repeat for several (all must match).",
    )
    hours = serializers.FloatField(
        required=False, min_value=0.001, max_value=24 * 3660, help_text="Range ending now (or at `end`)."
    )
    start = TimeField(required=False, help_text="Range start: RFC 3339 or epoch seconds.")
    end = TimeField(required=False, help_text="Range end (default now): RFC 3339 or epoch seconds.")
    step = serializers.FloatField(
        required=False, min_value=0.001, help_text="Bucket size in seconds; buckets even when the range has few points."
    )
    limit = serializers.IntegerField(required=False, min_value=1, help_text="Series per page.")
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_OFFSET, default=0)

    def validate(self, attrs: dict) -> dict:
        unknown = sorted(set(self.initial_data) - set(self.fields) - FRAMEWORK_PARAMETERS)
        if unknown:
            raise ValidationError({name: ["Unknown parameter."] for name in unknown})
        ranged = any(name in attrs for name in ("hours", "start", "end"))
        if "hours" in attrs and "start" in attrs:
            raise ValidationError({"start": ["Give either hours or start, not both."]})
        if "end" in attrs and "hours" not in attrs and "start" not in attrs:
            raise ValidationError({"start": ["end needs start or hours."]})
        if "step" in attrs and not ranged:
            raise ValidationError({"step": ["step needs a range: hours or start/end."]})
        limit_max = RANGE_LIMIT_MAX if ranged else LIST_LIMIT_MAX
        if attrs.get("limit", 0) > limit_max:
            raise ValidationError({"limit": [f"At most {limit_max} series per page here."]})
        attrs["ranged"] = ranged
        return attrs


# --- Output -----------------------------------------------------------------------------

SAMPLE_VALUE_SCHEMA = {
    "oneOf": [{"type": "number"}, {"type": "string", "enum": sorted(NON_FINITE)}],
    "description": "A number, or one of the strings NaN, +Inf, -Inf.",
}


@extend_schema_field(SAMPLE_VALUE_SCHEMA)
class SampleValueField(serializers.Field):
    def to_representation(self, value: float | None):
        return format_value(value)


class PointSerializer(serializers.Serializer):
    """Schema of one point. Raw points have timestamp and value; bucketed ones also min,
    max and count, and their value is the bucket's average."""

    timestamp = serializers.FloatField(help_text="Epoch seconds; for a bucket, its start.")
    value = SampleValueField(help_text="The sample's value, or the bucket's average.")
    min = SampleValueField(required=False, help_text="Bucketed only.")
    max = SampleValueField(required=False, help_text="Bucketed only.")
    count = serializers.IntegerField(required=False, help_text="Bucketed only: samples in the bucket.")


@extend_schema_field(PointSerializer(many=True))
class PointsField(serializers.Field):
    """The points of a series, written without a serializer per point: a 1,000-point
    series would otherwise cost more than its query."""

    def __init__(self, *, bucketed: bool, **kwargs):
        self.bucketed = bucketed
        super().__init__(**kwargs)

    def to_representation(self, points: tuple[Point, ...]) -> list[dict]:
        if not self.bucketed:
            return [{"timestamp": p.ts / 1000, "value": format_value(p.value)} for p in points]
        return [
            {
                "timestamp": p.ts / 1000,
                "value": format_value(p.value),
                "min": format_value(p.min),
                "max": format_value(p.max),
                "count": p.count,
            }
            for p in points
        ]


class SeriesSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    metric = serializers.CharField()
    labels = serializers.DictField(child=serializers.CharField())
    last_value = SampleValueField(allow_null=True)
    last_timestamp = serializers.FloatField(allow_null=True, help_text="Epoch seconds of the last sample.")

    def to_representation(self, info: SeriesInfo) -> dict:
        return series_representation(info)


def series_representation(info: SeriesInfo) -> dict:
    """What SeriesSerializer writes, without a serializer instance per series (10,000 of
    those cost more than the query)."""
    return {
        "id": info.id,
        "metric": info.metric,
        "labels": dict(info.labels),
        "last_value": format_value(info.last_value),
        "last_timestamp": format_ts(info.last_ts),
    }


class SeriesPointsSerializer(SeriesSerializer):
    points = PointsField(bucketed=False)


class PageSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Matching series, all pages.")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class SeriesListResponseSerializer(PageSerializer):
    success = serializers.BooleanField()
    metrics = SeriesSerializer(many=True)


class SeriesRangeResponseSerializer(PageSerializer):
    success = serializers.BooleanField()
    start = serializers.FloatField(help_text="Epoch seconds.")
    end = serializers.FloatField(help_text="Epoch seconds.")
    step = serializers.FloatField(allow_null=True, help_text="Bucket size in seconds; null when points are raw.")
    metrics = SeriesPointsSerializer(many=True)


# --- The view half -------------------------------------------------------------------------


def list_body(page: SeriesPage) -> dict:
    """The response body of a series listing, without the envelope and page links."""
    return {"count": page.count, "metrics": [series_representation(info) for info in page.series]}


def range_body(result: RangeResult) -> dict:
    """The response body of a range query, without the envelope and page links."""
    points_field = PointsField(bucketed=result.step_ms is not None)
    metrics = []
    for item in result.series:
        entry = series_representation(item.series)
        entry["points"] = points_field.to_representation(item.points)
        metrics.append(entry)
    return {
        "count": result.count,
        "start": result.start_ms / 1000,
        "end": result.end_ms / 1000,
        "step": None if result.step_ms is None else result.step_ms / 1000,
        "metrics": metrics,
    }


QUERY_PARAMETERS = [
    OpenApiParameter("metric", OpenApiTypes.STR, description="Exact metric name, e.g. cpu_usage_percent."),
    OpenApiParameter(
        "label", OpenApiTypes.STR, many=True, explode=True, description="Label matcher key:value (repeatable)."
    ),
    OpenApiParameter("hours", OpenApiTypes.NUMBER, description="Return points of the last N hours."),
    OpenApiParameter("start", OpenApiTypes.STR, description="Range start: RFC 3339 or epoch seconds."),
    OpenApiParameter("end", OpenApiTypes.STR, description="Range end: RFC 3339 or epoch seconds (default now)."),
    OpenApiParameter(
        "step",
        OpenApiTypes.NUMBER,
        description=f"Bucket size in seconds. Default: raw points while no series has more than "
        f"{MAX_POINTS_PER_SERIES} in the range, else the step that keeps it under that.",
    ),
    OpenApiParameter(
        "limit",
        OpenApiTypes.INT,
        description=f"Series per page: default {LIST_LIMIT_DEFAULT} (max {LIST_LIMIT_MAX}); "
        f"with a range {RANGE_LIMIT_DEFAULT} (max {RANGE_LIMIT_MAX}).",
    ),
    OpenApiParameter("offset", OpenApiTypes.INT, description="Series to skip."),
]


# Applied to MetricsView.get, where drf-spectacular looks for it.
query_schema = extend_schema(
    operation_id="metrics_query",
    summary="List series with their last value, or query their points over a range",
    parameters=QUERY_PARAMETERS,
    responses={
        200: PolymorphicProxySerializer(
            component_name="MetricsQueryResponse",
            serializers=[SeriesListResponseSerializer, SeriesRangeResponseSerializer],
            resource_type_field_name=None,
        )
    },
)


def parse_query(params) -> dict:
    """Validated query parameters (raises ValidationError naming the parameter)."""
    serializer = MetricsQuerySerializer(data=params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def run_query(args: dict, *, now_ms: int | None = None) -> tuple[dict, int, int]:
    """Answer validated parameters: (body, limit, offset)."""
    selector = SeriesSelector(metric=args.get("metric"), labels=dict(args.get("label", [])))
    offset = args["offset"]
    if not args["ranged"]:
        limit = args.get("limit", LIST_LIMIT_DEFAULT)
        return list_body(list_series(selector, limit=limit, offset=offset)), limit, offset
    limit = args.get("limit", RANGE_LIMIT_DEFAULT)
    now_ms = round(time.time() * 1000) if now_ms is None else now_ms
    end_ms = args.get("end", now_ms)
    start_ms = end_ms - round(args["hours"] * 3_600_000) if "hours" in args else args["start"]
    step_ms = round(args["step"] * 1000) if "step" in args else None
    try:
        result = query_range(selector, start_ms=start_ms, end_ms=end_ms, step_ms=step_ms, limit=limit, offset=offset)
    except QueryError as exc:
        raise ValidationError({exc.parameter: [exc.message]}) from None
    return range_body(result), limit, offset


def query_metrics(request) -> Response:
    body, limit, offset = run_query(parse_query(request.query_params))
    return ok(**body, **page_links(request, count=body["count"], limit=limit, offset=offset))
