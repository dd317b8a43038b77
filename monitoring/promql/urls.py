"""The Prometheus HTTP API v1 read endpoints: under /prometheus/api/v1/ on the main port and
under /api/v1/ on the prometheus port (monitoring.promql.middleware)."""

from django.urls import path

from . import api

urlpatterns = [
    path("query", api.query_view, name="promql-query"),
    path("query_range", api.query_range_view, name="promql-query-range"),
    path("query_exemplars", api.exemplars_view, name="promql-query-exemplars"),
    path("series", api.series_view, name="promql-series"),
    path("labels", api.labels_view, name="promql-labels"),
    path("label/<str:name>/values", api.label_values_view, name="promql-label-values"),
    path("metadata", api.metadata_view, name="promql-metadata"),
    path("status/buildinfo", api.buildinfo_view, name="promql-buildinfo"),
]
