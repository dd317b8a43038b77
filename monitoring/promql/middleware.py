"""Serves Prometheus' API at /api/v1/ on the prometheus port. Daphne serves the main port
and the prometheus port from one process, so the port a request arrived on decides: there,
/api/v1/... is Prometheus' API; on the main port /api/ stays the REST API."""

import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from monitoring.models import GlobalSettings

PORT_URLCONF = "monitoring.promql.port_urls"
PORT_CACHE_SECONDS = 10.0  # how long the stored port is trusted before it is read again

_port_cache: tuple[float, int | None] = (float("-inf"), None)


def prometheus_port() -> int | None:
    """MONITORING_PROMETHEUS_PORT when set, else the global settings' prometheus_port (read
    at most every few seconds); None when there is none."""
    global _port_cache
    if settings.MONITORING_PROMETHEUS_PORT:
        return settings.MONITORING_PROMETHEUS_PORT
    read_at, port = _port_cache
    if time.monotonic() - read_at > PORT_CACHE_SECONDS:
        port = GlobalSettings.objects.filter(pk=1).values_list("prometheus_port", flat=True).first()
        if port is None and not GlobalSettings.objects.filter(pk=1).exists():
            port = GlobalSettings._meta.get_field("prometheus_port").default
        _port_cache = (time.monotonic(), port)
    return port or None


def forget_prometheus_port() -> None:
    global _port_cache
    _port_cache = (float("-inf"), None)


class PrometheusPortMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Only /api/v1/ paths are looked at, so other requests never read the port.
        if request.path.startswith("/api/v1/") and _arrived_on_prometheus_port(request):
            request.urlconf = PORT_URLCONF
        return self.get_response(request)


def _arrived_on_prometheus_port(request: HttpRequest) -> bool:
    try:
        port = int(request.META.get("SERVER_PORT") or 0)
    except ValueError:
        return False
    return port != 0 and port == prometheus_port()
