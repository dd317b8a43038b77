"""URL map: the dashboard at /, the admin, the REST API under /api/, probes."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config.admin_login import AdminLoginView
from monitoring import exposition
from monitoring import views as monitoring_views

api_patterns = [
    path("", include("monitoring.urls")),
    path("", include("alerts.urls")),
    path("", include("healthchecks.urls")),
    path("", include("notifications.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("schema/swagger/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-swagger"),
    path(
        "schema/redoc/",
        # Our template drops the page's web-font links (no requests leave a closed network).
        SpectacularRedocView.as_view(url_name="api-schema", template_name="monitoring/api_redoc.html"),
        name="api-redoc",
    ),
]

urlpatterns = [
    # Before the admin's own URLs: its log-in with the dashboard's failed-attempt limits.
    path("admin/login/", AdminLoginView.as_view(), name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("healthz", monitoring_views.healthz, name="healthz"),
    path("readyz", monitoring_views.readyz, name="readyz"),
    path("metrics", exposition.metrics_view, name="monitoring-metrics-exposition"),
    path("prometheus/api/v1/", include("monitoring.promql.urls")),
    path("", include("dashboard.urls")),
]

# Errors outside any view (a bad Host header, a failing middleware): JSON under /api/.
handler400 = "monitoring.api_frame.bad_request"
handler500 = "monitoring.api_frame.server_error"
