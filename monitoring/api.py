"""API of the monitoring core: the system status."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.views import APIView

from .api_frame import ok
from .status import system_status


class StatusSerializer(serializers.Serializer):
    system_health = serializers.ChoiceField(choices=["healthy", "degraded", "critical"])
    active_alerts = serializers.IntegerField()
    monitoring_targets = serializers.IntegerField()
    alert_rules = serializers.IntegerField()
    health_checks = serializers.IntegerField()


class StatusView(APIView):
    """`GET /api/status`: the shape of the original design."""

    @extend_schema(
        responses=inline_serializer(
            "StatusResponse", {"success": serializers.BooleanField(), "status": StatusSerializer()}
        )
    )
    def get(self, request):
        return ok(status=StatusSerializer(system_status().as_dict()).data)
