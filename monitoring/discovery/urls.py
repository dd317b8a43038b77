from django.urls import path

from . import api

discovered_list = api.DiscoveredTargetViewSet.as_view({"get": "list"})
discovered_detail = api.DiscoveredTargetViewSet.as_view({"get": "retrieve"})
discovered_approve = api.DiscoveredTargetViewSet.as_view({"post": "approve"})
discovered_reject = api.DiscoveredTargetViewSet.as_view({"post": "reject"})

urlpatterns = [
    path("devices/register", api.DeviceRegistrationView.as_view(), name="monitoring-device-register"),
    path("discovered-targets", discovered_list, name="monitoring-discovered-list"),
    path("discovered-targets/<int:pk>", discovered_detail, name="monitoring-discovered-detail"),
    path("discovered-targets/<int:pk>/approve", discovered_approve, name="monitoring-discovered-approve"),
    path("discovered-targets/<int:pk>/reject", discovered_reject, name="monitoring-discovered-reject"),
]
