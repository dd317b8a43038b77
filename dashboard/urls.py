"""The dashboard's pages, its actions and the log-in."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import actions, views
from .auth import RateLimitedLoginView

urlpatterns = [
    path("login/", RateLimitedLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.overview, name="dashboard-overview"),
    path("alerts/", views.alerts, name="dashboard-alerts"),
    path("alerts/<int:alert_id>/", views.alert_detail, name="dashboard-alert-detail"),
    path("alerts/<int:alert_id>/acknowledge", actions.alert_acknowledge, name="dashboard-alert-acknowledge"),
    path("alerts/<int:alert_id>/resolve", actions.alert_resolve, name="dashboard-alert-resolve"),
    path("alerts/<int:alert_id>/silence", actions.alert_silence, name="dashboard-alert-silence"),
    path("metrics/", views.metrics, name="dashboard-metrics"),
    path("metrics/data", views.metrics_data, name="dashboard-metrics-data"),
    path("health/", views.health, name="dashboard-health"),
    path("health/<int:check_id>/run", actions.check_run, name="dashboard-check-run"),
    path("targets/", views.targets, name="dashboard-targets"),
    path(
        "targets/discovered/<int:discovered_id>/approve",
        actions.discovered_approve,
        name="dashboard-discovered-approve",
    ),
    path(
        "targets/discovered/<int:discovered_id>/reject", actions.discovered_reject, name="dashboard-discovered-reject"
    ),
    path("logs/", views.logs, name="dashboard-logs"),
]
