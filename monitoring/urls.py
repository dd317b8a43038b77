from django.urls import path

from . import api, api_metrics

urlpatterns = [
    path("status", api.StatusView.as_view(), name="monitoring-status"),
    path("metrics", api_metrics.MetricsView.as_view(), name="monitoring-metrics"),
]
