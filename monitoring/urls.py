from django.urls import path

from . import api, api_ingest, api_metrics

urlpatterns = [
    path("status", api.StatusView.as_view(), name="monitoring-status"),
    path("metrics", api_metrics.MetricsView.as_view(), name="monitoring-metrics"),
    path("metrics/prometheus", api_ingest.PrometheusPushView.as_view(), name="monitoring-metrics-push-prometheus"),
]
