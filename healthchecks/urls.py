from django.urls import path

from . import api

check_list = api.HealthCheckViewSet.as_view({"get": "list", "post": "create"})
check_detail = api.HealthCheckViewSet.as_view(
    {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
)
check_run = api.HealthCheckViewSet.as_view({"post": "run"})

urlpatterns = [
    path("health-checks", check_list, name="healthchecks-check-list"),
    path("health-checks/run", check_run, name="healthchecks-check-run"),
    path("health-checks/<int:pk>", check_detail, name="healthchecks-check-detail"),
    path("heartbeat/<uuid:ping_uuid>", api.HeartbeatView.as_view(), name="healthchecks-heartbeat-ping"),
    path("heartbeat/<uuid:ping_uuid>/fail", api.HeartbeatFailView.as_view(), name="healthchecks-heartbeat-fail"),
    path("heartbeat/<uuid:ping_uuid>/start", api.HeartbeatStartView.as_view(), name="healthchecks-heartbeat-start"),
    path("targets/<str:target_id>/health", api.TargetHealthView.as_view(), name="healthchecks-target-health"),
]
