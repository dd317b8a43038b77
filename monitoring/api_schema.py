"""What the OpenAPI schema says about every operation without each view repeating it: the
API-key security schemes, and the error envelope for each status the frame can answer
(400, 401, 403, 404, 413, 415, 429) wherever that status can happen, and that an empty
optional query parameter (`?status=`) counts as absent."""

from django.core.exceptions import FieldDoesNotExist
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from .api_frame import ErrorSerializer
from .api_parsers import CurlJSONParser

BODY_METHODS = ("POST", "PUT", "PATCH")


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """`X-API-Key: <key>` or, equally, `Authorization: Bearer <key>`."""

    target_class = "monitoring.auth.ApiKeyAuthentication"
    name = ["ApiKeyHeader", "BearerKey"]

    def get_security_requirement(self, auto_schema) -> list[dict]:
        return [{"ApiKeyHeader": []}, {"BearerKey": []}]  # either one

    def get_security_definition(self, auto_schema) -> list[dict]:
        return [
            {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key (`mon_...`)."},
            {"type": "http", "scheme": "bearer", "description": "The same API key as a bearer token."},
        ]


def output_may_be_null(field: serializers.Field) -> bool:
    """Whether a read-only field can be written as null although it does not say so: its
    source runs through a nullable model field (`acknowledged_by`, `target.name`) or its
    default is None."""
    if not field.read_only or field.allow_null or field.source in (None, "*"):
        return False
    if field.default is None:
        return True
    model = getattr(getattr(field.parent, "Meta", None), "model", None)
    for name in field.source.split("."):
        if model is None:
            return False
        try:
            model_field = model._meta.get_field(name)
        except FieldDoesNotExist:
            return False
        if model_field.null:
            return True
        model = model_field.related_model if model_field.is_relation else None
    return False


class EnvelopeAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus the failure envelope (api_frame.ErrorSerializer)
    for the statuses every view shares, and list items that may be partial under
    `?fields=`."""

    def _is_public(self) -> bool:
        return any(isinstance(permission, AllowAny) for permission in self.view.get_permissions())

    def _error_codes(self) -> list[int]:
        codes = [429]
        has_body = self.method in BODY_METHODS
        has_path_parameters = "{" in self.path
        has_query = bool(self._get_filter_parameters() or self._get_pagination_parameters())
        has_query = has_query or any(
            getattr(parameter, "location", "query") == "query" for parameter in self.get_override_parameters()
        )
        if has_body or has_query or has_path_parameters:
            codes.append(400)
        if not self._is_public():
            codes += [401, 403]
        if has_path_parameters:
            codes.append(404)
        if has_body:
            codes += [413, 415]
        return codes

    def map_parsers(self) -> list[str]:
        # JSON labelled as a form (CurlJSONParser) is accepted for curl, not advertised.
        return [media_type for media_type in super().map_parsers() if media_type != CurlJSONParser.media_type]

    def _get_parameters(self) -> list[dict]:
        parameters = super()._get_parameters()
        for parameter in parameters:
            # The API's convention (DRF's, for forms): `?status=` is the same as no `status`.
            if parameter["in"] == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
        return parameters

    def _get_serializer_field_meta(self, field, direction):
        meta = super()._get_serializer_field_meta(field, direction)
        if isinstance(field, serializers.Field) and output_may_be_null(field):
            meta["nullable"] = True
        return meta

    def _get_response_bodies(self, direction: str = "response") -> dict:
        declared = self.get_response_serializers()
        if self.method == "DELETE" and not isinstance(declared, dict):
            # Our deletes answer 200 with the envelope, not drf-spectacular's bodiless 204.
            responses = {"200": self._get_response_for_code(declared, "200", None, direction)}
        else:
            responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            responses.setdefault(str(code), self._get_response_for_code(ErrorSerializer, str(code), None, direction))
        return dict(sorted(responses.items()))

    def _get_paginator(self):
        paginator = super()._get_paginator()
        if paginator is not None:
            paginator._sparse_schema = getattr(self.view, "sparse_fields", False)
        return paginator
