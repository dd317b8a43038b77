"""`/api/metrics`: GET lists and queries series (monitoring.api_queries), POST pushes a JSON
batch through the one ingestion path (monitoring.api_ingest)."""

from rest_framework.views import APIView

from . import api_ingest, api_queries


class MetricsView(APIView):
    @property
    def throttle_scope(self) -> str | None:
        """Pushes count against the ingestion budget; queries against the key's own."""
        return "ingest" if self.request.method == "POST" else None

    def get_permissions(self):
        return api_ingest.push_permissions() if self.request.method == "POST" else super().get_permissions()

    @api_queries.query_schema
    def get(self, request):
        return api_queries.query_metrics(request)

    @api_ingest.push_json_schema
    def post(self, request):
        return api_ingest.push_json(request)
