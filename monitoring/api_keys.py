"""`/api/api-keys` (admin): list, create (the plain key is in the answer to the create and
nowhere else, ever), change the name, expiry or read-only flag, and revoke (DELETE). A
revoked key stays listed: the audit log names keys, and a name must keep meaning one key."""

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status, viewsets

from .api_frame import ok
from .api_pagination import EnvelopePagination, order_by_param, ordering_parameter
from .apikeys import create_api_key, revoke_api_key
from .audit import audit_request, changed_fields
from .choices import AuditAction, AuditSource, Role
from .models import ApiKey
from .permissions import IsAdmin
from .roles import ROLE_RANK

ORDERING = ("name", "created_at", "last_used_at", "expires_at")
KEY_STATES = ("active", "revoked", "expired")


class ApiKeySerializer(serializers.ModelSerializer):
    """An API key without its secret: only the first characters (`prefix`) are shown."""

    user = serializers.SlugRelatedField(
        slug_field="username",
        queryset=User.objects.filter(is_active=True),
        required=False,
        help_text="The owner, whose role the key carries (default: you).",
    )
    name = serializers.CharField(max_length=100)
    role = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "user",
            "role",
            "read_only",
            "state",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ]
        read_only_fields = ["id", "prefix", "role", "state", "created_at", "revoked_at", "last_used_at"]

    @extend_schema_field(serializers.ChoiceField(choices=[*Role.values, None], allow_null=True))
    def get_role(self, key: ApiKey) -> str | None:
        user = key.user
        if not user.is_active:
            return None
        if user.is_superuser:
            return Role.ADMIN.value
        # From the prefetched groups: roles.user_role would query once per key.
        names = {group.name for group in user.groups.all()}
        held = [role for role in ROLE_RANK if role.value in names]
        return max(held, key=ROLE_RANK.__getitem__).value if held else None

    @extend_schema_field(serializers.ChoiceField(choices=KEY_STATES))
    def get_state(self, key: ApiKey) -> str:
        if key.revoked_at is not None:
            return "revoked"
        if key.expires_at is not None and key.expires_at <= timezone.now():
            return "expired"
        return "active"


class ApiKeyChangeSerializer(ApiKeySerializer):
    """What can change on a key: its name, expiry and read-only flag (not its owner)."""

    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    name = serializers.CharField(max_length=100, required=False)


class ApiKeyPagination(EnvelopePagination):
    items_key = "api_keys"


def _audit_view(key: ApiKey) -> dict:
    return {
        "name": key.name,
        "prefix": key.prefix,
        "user": key.user.get_username(),
        "read_only": key.read_only,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _key_response(name: str, **extra: serializers.Field) -> serializers.Serializer:
    return inline_serializer(name, {"success": serializers.BooleanField(), "api_key": ApiKeySerializer(), **extra})


class ApiKeyViewSet(viewsets.GenericViewSet):
    """API keys, for admins only."""

    permission_classes = [IsAdmin]
    serializer_class = ApiKeySerializer
    pagination_class = ApiKeyPagination
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[ApiKey]:
        # The owner's groups come in one more query for the whole page (the key's role).
        return ApiKey.objects.select_related("user").prefetch_related("user__groups")

    @extend_schema(parameters=[ordering_parameter(ORDERING, "-created_at")])
    def list(self, request):
        keys = order_by_param(self.get_queryset(), request, ORDERING, "-created_at")
        page = self.paginate_queryset(keys)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(responses=_key_response("ApiKeyResponse"))
    def retrieve(self, request, pk: str):
        return ok(api_key=self.get_serializer(self.get_object()).data)

    @extend_schema(
        responses={
            201: _key_response(
                "ApiKeyCreatedResponse",
                key=serializers.CharField(help_text="The key itself: shown this once, stored only as a hash."),
            )
        }
    )
    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with transaction.atomic():
            new = create_api_key(
                user=data.get("user") or request.user,
                name=data["name"],
                expires_at=data.get("expires_at"),
                read_only=data.get("read_only", False),
            )
            audit_request(
                request,
                source=AuditSource.API,
                action=AuditAction.CREATE,
                obj=new.api_key,
                after=_audit_view(new.api_key),
            )
        key = self.get_queryset().get(pk=new.api_key.pk)
        return ok(status.HTTP_201_CREATED, api_key=self.get_serializer(key).data, key=new.plain)

    @extend_schema(request=ApiKeyChangeSerializer, responses=_key_response("ApiKeyUpdatedResponse"))
    def partial_update(self, request, pk: str):
        with transaction.atomic():
            key = self.get_queryset().select_for_update(of=("self",)).get(pk=self.get_object().pk)
            before = _audit_view(key)
            serializer = ApiKeyChangeSerializer(key, data=request.data, partial=True)
            serializer.is_valid(raise_exception=True)
            key = serializer.save()
            old, new = changed_fields(before, _audit_view(key))
            if new:
                audit_request(
                    request, source=AuditSource.API, action=AuditAction.UPDATE, obj=key, before=old, after=new
                )
        return ok(api_key=self.get_serializer(self.get_queryset().get(pk=key.pk)).data)

    @extend_schema(request=None, responses=_key_response("ApiKeyRevokedResponse"))
    def destroy(self, request, pk: str):
        """Revoke the key: it stops working at once and stays listed as `revoked`."""
        with transaction.atomic():
            key = self.get_object()
            if key.revoked_at is None:
                revoke_api_key(key)
                audit_request(
                    request,
                    source=AuditSource.API,
                    action=AuditAction.REVOKE,
                    obj=key,
                    after={"revoked_at": key.revoked_at.isoformat()},
                )
        return ok(api_key=self.get_serializer(self.get_queryset().get(pk=key.pk)).data)
