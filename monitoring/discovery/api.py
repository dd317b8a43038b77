"""API of discovery: `POST /api/devices/register` (a device's key, any role, not read-only)
and the discovered targets (viewers read; admins approve and reject, audited)."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import action
from rest_framework.views import APIView
from rest_framework.viewsets import ReadOnlyModelViewSet

from alerts.api.common import READ_ERRORS, WRITE_ERRORS, EnvelopePagination, audit_context

from ..api_frame import ok
from ..api_ingest import push_permissions
from ..choices import DiscoverySource, DiscoveryState
from ..permissions import ReadViewerWriteAdmin
from .devices import MAX_DEVICE_ID_LENGTH, DeviceReport, note_devices_seen
from .models import DiscoveredTarget
from .services import DiscoveryError, approve_discovered, reject_discovered


class DeviceRegistrationSerializer(serializers.Serializer):
    device_id = serializers.CharField(max_length=MAX_DEVICE_ID_LENGTH)
    kind = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    firmware_version = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    parent = serializers.CharField(
        max_length=MAX_DEVICE_ID_LENGTH,
        required=False,
        allow_blank=True,
        default="",
        help_text="The device id of the gateway this device reports through.",
    )

    def validate_device_id(self, value: str) -> str:
        if not value.isprintable():
            raise serializers.ValidationError("A device id is printable text.")
        return value

    def validate_parent(self, value: str) -> str:
        return self.validate_device_id(value) if value else value

    def validate(self, attrs: dict) -> dict:
        if attrs["parent"] and attrs["parent"] == attrs["device_id"]:
            raise serializers.ValidationError({"parent": ["A device cannot be its own gateway."]})
        return attrs


class DiscoveredTargetSerializer(serializers.ModelSerializer):
    target = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = DiscoveredTarget
        fields = [
            "id",
            "source",
            "identity",
            "state",
            "kind",
            "name",
            "endpoint",
            "labels",
            "parent_ref",
            "details",
            "target",
            "first_seen_at",
            "last_seen_at",
            "missing_since",
            "decided_at",
            "decided_by",
        ]
        read_only_fields = fields


def _discovered_json(row: DiscoveredTarget) -> dict:
    return DiscoveredTargetSerializer(row).data


DISCOVERED_RESPONSE = inline_serializer(
    "DiscoveredTargetResponse",
    {"success": serializers.BooleanField(), "discovered_target": DiscoveredTargetSerializer()},
)


class DeviceRegistrationView(APIView):
    """`POST /api/devices/register`: a device announces itself (id, kind, firmware version,
    parent gateway). It becomes a discovered `device` target awaiting approval, or a target
    at once when devices are auto-approved; registering again updates what it said."""

    def get_permissions(self):
        return push_permissions()

    @extend_schema(
        request=DeviceRegistrationSerializer,
        responses={
            200: inline_serializer(
                "DeviceRegistered",
                {"success": serializers.BooleanField(), "device": DiscoveredTargetSerializer()},
            ),
            **WRITE_ERRORS,
        },
    )
    def post(self, request):
        serializer = DeviceRegistrationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = DeviceReport(**serializer.validated_data)
        note_devices_seen({report.device_id: report}, now=timezone.now())
        row = DiscoveredTarget.objects.select_related("target").get(identity=f"device:{report.device_id}")
        return ok(device=_discovered_json(row))


class DiscoveredTargetPagination(EnvelopePagination):
    items_key = "discovered_targets"


class DiscoveredTargetViewSet(ReadOnlyModelViewSet):
    """`GET /api/discovered-targets` (`?state=pending&source=device`), and
    `POST /api/discovered-targets/{id}/approve|reject` (admin)."""

    serializer_class = DiscoveredTargetSerializer
    permission_classes = [ReadViewerWriteAdmin]
    pagination_class = DiscoveredTargetPagination

    def get_queryset(self):
        rows = DiscoveredTarget.objects.select_related("target").order_by("-first_seen_at", "-id")
        params = self.request.query_params
        unknown = set(params) - {"state", "source", "limit", "offset"}
        if unknown:
            raise exceptions.ValidationError({name: ["Unknown parameter."] for name in sorted(unknown)})
        for name, choices in (("state", DiscoveryState), ("source", DiscoverySource)):
            value = params.get(name)
            if value:
                if value not in choices.values:
                    raise exceptions.ValidationError({name: [f"One of {', '.join(choices.values)}."]})
                rows = rows.filter(**{name: value})
        return rows

    @extend_schema(responses={200: DiscoveredTargetSerializer(many=True), **READ_ERRORS})
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: DISCOVERED_RESPONSE, **READ_ERRORS})
    def retrieve(self, request, *args, **kwargs):
        return ok(discovered_target=_discovered_json(self.get_object()))

    def _decide(self, request, pk: str, decide) -> DiscoveredTarget:
        row = get_object_or_404(DiscoveredTarget, pk=pk)
        context = audit_context(request)
        try:
            decide(
                discovered=row,
                actor=request.user,
                source=context["source"],
                ip=context["ip"],
                api_key_name=context["api_key_name"],
            )
        except DiscoveryError as exc:
            raise exceptions.ValidationError({"state": [str(exc)]}) from None
        row.refresh_from_db()
        return row

    @extend_schema(request=None, responses={200: DISCOVERED_RESPONSE, **WRITE_ERRORS})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        row = self._decide(request, pk, approve_discovered)
        return ok(status.HTTP_200_OK, discovered_target=_discovered_json(row))

    @extend_schema(request=None, responses={200: DISCOVERED_RESPONSE, **WRITE_ERRORS})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        row = self._decide(request, pk, reject_discovered)
        return ok(discovered_target=_discovered_json(row))
