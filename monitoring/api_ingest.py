"""Push endpoints of the ingestion path (being built: issue 3)."""

from rest_framework.response import Response

from .api_frame import error_body
from .permissions import IsOperator


def push_permissions():
    return [IsOperator()]


def push_json(request) -> Response:
    return Response(error_body(503, "Metric push is not available in this build yet."), status=503)
