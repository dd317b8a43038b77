"""The URL map of requests that arrive on the prometheus port: Prometheus' API at /api/v1/
(where a Prometheus client looks for it), then everything the main port serves."""

from django.urls import include, path

from config.urls import handler400, handler500  # noqa: F401 (the error handlers of this URL map too)
from config.urls import urlpatterns as main_urlpatterns

urlpatterns = [
    path("api/v1/", include(("monitoring.promql.urls", "promql-port"), namespace="promql-port")),
    *main_urlpatterns,
]
