"""Metric queries of `GET /api/metrics` (being built: issue 3)."""

from rest_framework.response import Response

from .api_frame import error_body


def query_metrics(request) -> Response:
    return Response(error_body(503, "Metric queries are not available in this build yet."), status=503)
