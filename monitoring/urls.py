from django.urls import include, path

from . import api, api_audit, api_ingest, api_keys, api_metrics, api_targets

target_list = api_targets.TargetViewSet.as_view({"get": "list", "post": "create"})
target_detail = api_targets.TargetViewSet.as_view(
    {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
)
key_list = api_keys.ApiKeyViewSet.as_view({"get": "list", "post": "create"})
key_detail = api_keys.ApiKeyViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})

urlpatterns = [
    path("audit-log", api_audit.AuditLogView.as_view(), name="monitoring-audit-log"),
    path("", include("monitoring.discovery.urls")),
    path("status", api.StatusView.as_view(), name="monitoring-status"),
    path("targets", target_list, name="monitoring-target-list"),
    path("targets/<str:target_id>", target_detail, name="monitoring-target-detail"),
    path("api-keys", key_list, name="monitoring-apikey-list"),
    path("api-keys/<int:pk>", key_detail, name="monitoring-apikey-detail"),
    path("metrics", api_metrics.MetricsView.as_view(), name="monitoring-metrics"),
    path("metrics/prometheus", api_ingest.PrometheusPushView.as_view(), name="monitoring-metrics-push-prometheus"),
]
