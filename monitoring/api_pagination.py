"""The one list convention of the API: pages of `limit`/`offset` inside the envelope
(`{"success": true, <items>: [...], "count", "next", "previous"}`), `ordering` from a list
each view declares, and `?fields=a,b` to keep only some keys of each item."""

from collections.abc import Iterable, Sequence

from django.db.models import F, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.utils.urls import remove_query_param, replace_query_param

from .api_frame import ok

# Larger offsets are refused rather than handed to the database (SQLite's integers are 64-bit).
MAX_OFFSET = 2**53


def _bounded_int(request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise exceptions.ValidationError({name: ["A whole number."]}) from None
    if not minimum <= value <= maximum:
        raise exceptions.ValidationError({name: [f"From {minimum} to {maximum}."]})
    return value


def parse_fields(request, allowed: Iterable[str] | None) -> list[str] | None:
    """The keys named by `?fields=a,b` (None without the parameter). A name that is not a
    key of the items is a 400, so a typo never yields silently empty items."""
    raw = request.query_params.get("fields")
    if not raw:
        return None  # `?fields=` is the same as no `fields`
    names = list(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    if not names:
        raise exceptions.ValidationError({"fields": ["Name fields separated by commas, e.g. fields=id,name."]})
    if allowed is not None:
        known = set(allowed)
        unknown = [name for name in names if name not in known]
        if unknown:
            raise exceptions.ValidationError(
                {"fields": [f"Unknown field {', '.join(unknown)}; use any of {', '.join(sorted(known))}."]}
            )
    return names


def keep_fields(items: list[dict], names: Sequence[str] | None) -> list[dict]:
    if names is None:
        return items
    return [{name: item[name] for name in names if name in item} for item in items]


class EnvelopePagination(LimitOffsetPagination):
    """limit/offset pages in the envelope: `{"success": true, <items_key>: [...], "count": N,
    "next": url|null, "previous": url|null}`. Unlike DRF's, a malformed or out-of-range
    `limit`/`offset` is a 400 instead of being replaced by the default, and `?fields=` is
    applied to each item (when the view sets `sparse_fields = True`)."""

    default_limit = 100
    max_limit = 1000
    items_key = "items"

    def paginate_queryset(self, queryset, request, view=None):
        self.fields = parse_fields(request, _item_fields(view)) if getattr(view, "sparse_fields", False) else None
        self.limit = _bounded_int(request, self.limit_query_param, self.default_limit, 1, self.max_limit)
        self.offset = _bounded_int(request, self.offset_query_param, 0, 0, MAX_OFFSET)
        self.request = request
        self.count = self.get_count(queryset)
        if self.count == 0 or self.offset > self.count:
            return []
        return list(queryset[self.offset : self.offset + self.limit])

    def get_paginated_response(self, data):
        return ok(
            **{
                self.items_key: keep_fields(data, self.fields),
                "count": self.count,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
            }
        )

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = [
            {
                "name": self.limit_query_param,
                "required": False,
                "in": "query",
                "description": f"Items per page (default {self.default_limit}, at most {self.max_limit}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit},
            },
            {
                "name": self.offset_query_param,
                "required": False,
                "in": "query",
                "description": "Items to skip.",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
            },
        ]
        if getattr(view, "sparse_fields", False):
            parameters.append(FIELDS_PARAMETER_SCHEMA)
        return parameters

    def get_paginated_response_schema(self, schema: dict) -> dict:
        if getattr(self, "_sparse_schema", False):
            schema = {**schema, "items": {"anyOf": [schema["items"], SPARSE_ITEM_SCHEMA]}}
        return {
            "type": "object",
            "required": ["success", self.items_key, "count", "next", "previous"],
            "properties": {
                "success": {"type": "boolean"},
                self.items_key: schema,
                "count": {"type": "integer"},
                "next": {"type": "string", "format": "uri", "nullable": True},
                "previous": {"type": "string", "format": "uri", "nullable": True},
            },
        }


def _item_fields(view) -> list[str] | None:
    """The keys of a list item: the fields of the view's serializer."""
    get_serializer = getattr(view, "get_serializer", None)
    if get_serializer is not None:
        return list(get_serializer().fields)
    serializer_class = getattr(view, "serializer_class", None)
    if serializer_class is not None:
        return list(serializer_class(context={"request": getattr(view, "request", None)}).fields)
    return None


FIELDS_PARAMETER_SCHEMA = {
    "name": "fields",
    "required": False,
    "in": "query",
    "description": "Comma-separated keys to keep in each item, e.g. `id,name` (default: all).",
    "schema": {"type": "string"},
}
# With ?fields= an item has only the keys asked for, so the schema of a list item of a view
# with sparse fields also admits such a partial object.
SPARSE_ITEM_SCHEMA = {"type": "object", "description": "With `fields`: only the keys named."}


def page_links(request, *, count: int, limit: int, offset: int) -> dict:
    """`next`/`previous` URLs for a list paged by hand (not through a paginator): this
    request's URL with `offset` moved by `limit`."""
    url = request.build_absolute_uri()
    following = replace_query_param(url, "offset", offset + limit) if offset + limit < count else None
    if offset <= 0:
        preceding = None
    elif offset - limit <= 0:
        preceding = remove_query_param(url, "offset")
    else:
        preceding = replace_query_param(url, "offset", offset - limit)
    return {"next": following, "previous": preceding}


def order_by_param(queryset: QuerySet, request, allowed: Sequence[str], default: str) -> QuerySet:
    """Order by `?ordering=name` or `-name` from `allowed` (else `default`); the primary
    key breaks ties, so pages never overlap. Nulls sort last either way."""
    raw = request.query_params.get("ordering") or default
    field = raw.removeprefix("-")
    if field not in allowed:
        choices = ", ".join(f"{name}, -{name}" for name in allowed)
        raise exceptions.ValidationError({"ordering": [f"Order by one of {choices}."]})
    descending = raw.startswith("-")
    order = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
    return queryset.order_by(order, "-pk" if descending else "pk")


def ordering_parameter(allowed: Sequence[str], default: str) -> OpenApiParameter:
    return OpenApiParameter(
        "ordering",
        OpenApiTypes.STR,
        enum=[value for name in allowed for value in (name, f"-{name}")],
        description=f"Sort key; `-` sorts descending. Default `{default}`.",
    )
