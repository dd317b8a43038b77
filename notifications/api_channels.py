"""`/api/notification-channels`: channels read by viewers and configured by admins. Secrets
are write-only: given in `secrets` (or mixed into `config`, from which they are taken out),
encrypted at rest, and never returned; answers name which secrets are stored, not their
values."""

from typing import Any

from django.db import transaction
from django.db.models import ProtectedError, QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets

from alerts.api.common import audit_context
from monitoring.api_frame import Conflict, ErrorSerializer, ok
from monitoring.api_pagination import EnvelopePagination, order_by_param, ordering_parameter
from monitoring.audit import MASK, changed_fields, record_audit, snapshot
from monitoring.choices import AuditAction
from monitoring.config_io.channels import CHANNEL_FIELDS, channel_settings_problems, setting_name
from monitoring.crypto import DecryptionError
from monitoring.permissions import ReadViewerWriteAdmin

from .choices import ChannelKind
from .models import NotificationChannel
from .secrets import (
    HEADERS,
    get_channel_secrets,
    merge_channel_settings,
    set_channel_secrets,
    split_channel_settings,
)

ORDERING = ("name", "key", "kind", "created_at")
# Bookkeeping of the senders, and the ciphertext (its change is audited by name only).
SKIPPED_IN_AUDIT = ("updated_at", "failing_since", "last_error", "secrets")


def _stored_secrets(channel: NotificationChannel) -> dict[str, Any]:
    try:
        return get_channel_secrets(channel)
    except DecryptionError:
        return {}


def secret_names(secrets: dict[str, Any]) -> list[str]:
    """`password`, `headers.Authorization`...: what is stored, never its value."""
    names = []
    for name, value in sorted(secrets.items()):
        if name == HEADERS and isinstance(value, dict):
            names.extend(f"{HEADERS}.{header}" for header in sorted(value))
        else:
            names.append(name)
    return names


def field_path(path: str, config: dict[str, Any], given: dict[str, Any]) -> str:
    """`config.<path>` or `secrets.<path>`: where the request, or else the stored channel,
    has the value a problem is about (a header by its own name)."""
    name, in_config, in_given = setting_name(path), config, given
    if name == HEADERS and path != HEADERS:
        name = path[len(HEADERS) + 1 :]
        in_config, in_given = config.get(HEADERS), given.get(HEADERS)
    if isinstance(in_given, dict) and name in in_given:
        return f"secrets.{path}"
    if isinstance(in_config, dict) and name in in_config:
        return f"config.{path}"
    return f"secrets.{path}"  # stored before this request


class ChannelSerializer(serializers.ModelSerializer):
    """A channel. `config` holds the settings that are not secret; `secrets` is write-only
    and merged into what is stored (`clear_secrets` drops everything stored first)."""

    key = serializers.SlugField(max_length=100)
    kind = serializers.ChoiceField(choices=ChannelKind.choices)
    config = serializers.DictField(required=False, help_text="The kind's settings, e.g. smtp_server, recipients.")
    secrets = serializers.DictField(
        write_only=True,
        required=False,
        help_text="Secret settings (password, webhook_url, auth_token, integration_key, signing_secret, "
        "secret webhook headers under `headers`); never returned.",
    )
    clear_secrets = serializers.BooleanField(write_only=True, required=False, default=False)
    secrets_stored = serializers.SerializerMethodField(help_text="Names of the stored secrets.")
    rate_limit_per_minute = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False, allow_null=True)
    template = serializers.CharField(required=False, allow_blank=True, max_length=20_000)

    class Meta:
        model = NotificationChannel
        fields = [
            "id",
            "key",
            "name",
            "kind",
            "enabled",
            "config",
            "secrets",
            "clear_secrets",
            "secrets_stored",
            "rate_limit_per_minute",
            "template",
            "failing_since",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "secrets_stored", "failing_since", "last_error", "created_at", "updated_at"]

    def get_secrets_stored(self, channel: NotificationChannel) -> list[str]:
        return secret_names(_stored_secrets(channel))

    def validate_key(self, value: str) -> str:
        others = NotificationChannel.objects.filter(key=value).exclude(pk=getattr(self.instance, "pk", None))
        if others.exists():
            raise serializers.ValidationError(f"A channel with key {value!r} exists already.")
        return value

    def validate(self, attrs: dict) -> dict:
        """Split secrets out of `config`, merge them with the stored ones, and judge the
        result by the kind's declared settings as the configuration import does, so that
        whatever is saved here exports and imports again."""
        instance = self.instance
        kind = attrs.get("kind", getattr(instance, "kind", None))
        raw_config = attrs.get("config", getattr(instance, "config", {}) or {})
        config, secret_in_config = split_channel_settings(kind, raw_config)
        given = attrs.pop("secrets", {}) or {}
        if not all(
            isinstance(value, str) or (name == HEADERS and isinstance(value, dict)) for name, value in given.items()
        ):
            raise serializers.ValidationError({"secrets": ["Secret values are strings (headers: an object)."]})
        if HEADERS in given and not all(isinstance(v, str) for v in given[HEADERS].values()):
            raise serializers.ValidationError({"secrets": ["Header values are strings."]})
        stored = {} if attrs.pop("clear_secrets", False) or instance is None else _stored_secrets(instance)
        errors: dict[str, list[str]] = {}
        incoming = {**secret_in_config, **given}
        for name, value in incoming.items():
            # The mask of an export means "the value stored", as import_config reads it.
            if value == MASK:
                if name in stored:
                    incoming[name] = stored[name]
                else:
                    errors[field_path(name, raw_config, given)] = [f"is masked ({MASK}) but nothing is stored"]
            elif name == HEADERS and isinstance(value, dict):
                kept = stored.get(HEADERS) or {}
                for header, header_value in value.items():
                    if header_value == MASK and header not in kept:
                        path = field_path(f"{HEADERS}.{header}", raw_config, given)
                        errors[path] = [f"is masked ({MASK}) but nothing is stored"]
                incoming[name] = {h: kept.get(h, v) if v == MASK else v for h, v in value.items()}
        secrets = {**stored, **incoming}
        everything = merge_channel_settings(config, secrets)
        missing = [name for name, spec in CHANNEL_FIELDS[kind].items() if spec.required and name not in everything]
        if missing:
            errors["config"] = [f"A {kind} channel needs {', '.join(missing)} (secrets may go in `secrets`)."]
        # The import's judgement of each setting, under the path of the request's field.
        for problem in channel_settings_problems(kind, everything):
            if problem.path not in missing:
                errors.setdefault(field_path(problem.path, raw_config, given), []).append(problem.message)
        if errors:
            raise serializers.ValidationError(errors)
        attrs["config"] = config
        self.new_secrets = secrets
        return attrs

    def save(self, **kwargs: Any) -> NotificationChannel:
        channel = super().save(**kwargs)
        # Encryption binds the value to the row's id, so it follows the first save.
        set_channel_secrets(channel, self.new_secrets)
        channel.save(update_fields=["secrets"])
        return channel


class ChannelPagination(EnvelopePagination):
    items_key = "channels"


def _channel_response(name: str) -> serializers.Serializer:
    return inline_serializer(name, {"success": serializers.BooleanField(), "channel": ChannelSerializer()})


def _audit_view(channel: NotificationChannel) -> dict:
    view = snapshot(channel, exclude=SKIPPED_IN_AUDIT)
    view["secrets_stored"] = secret_names(_stored_secrets(channel))
    return view


class ChannelViewSet(viewsets.ModelViewSet):
    """Notification channels: viewers read, admins configure."""

    permission_classes = [ReadViewerWriteAdmin]
    serializer_class = ChannelSerializer
    pagination_class = ChannelPagination
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[NotificationChannel]:
        return NotificationChannel.objects.all()

    @extend_schema(parameters=[ordering_parameter(ORDERING, "name")])
    def list(self, request, *args, **kwargs):
        channels = order_by_param(self.get_queryset(), request, ORDERING, "name")
        kind = request.query_params.get("kind")
        if kind:
            if kind not in ChannelKind.values:
                raise serializers.ValidationError({"kind": [f"One of {', '.join(ChannelKind.values)}."]})
            channels = channels.filter(kind=kind)
        page = self.paginate_queryset(channels)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(responses=_channel_response("ChannelResponse"))
    def retrieve(self, request, *args, **kwargs):
        return ok(channel=self.get_serializer(self.get_object()).data)

    @extend_schema(responses={201: _channel_response("ChannelCreatedResponse")})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            channel = serializer.save()
            record_audit(
                actor=request.user,
                action=AuditAction.CREATE,
                obj=channel,
                after=_audit_view(channel),
                **audit_context(request),
            )
        return ok(status.HTTP_201_CREATED, channel=self.get_serializer(channel).data)

    @extend_schema(responses=_channel_response("ChannelUpdatedResponse"))
    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        with transaction.atomic():
            channel = NotificationChannel.objects.select_for_update().get(pk=self.get_object().pk)
            before = _audit_view(channel)
            serializer = self.get_serializer(channel, data=request.data, partial=partial)
            serializer.is_valid(raise_exception=True)
            channel = serializer.save()
            old, new = changed_fields(before, _audit_view(channel))
            if new:
                action = AuditAction.UPDATE
                if set(new) == {"enabled"}:
                    action = AuditAction.ENABLE if new["enabled"] else AuditAction.DISABLE
                record_audit(
                    actor=request.user, action=action, obj=channel, before=old, after=new, **audit_context(request)
                )
        return ok(channel=self.get_serializer(channel).data)

    @extend_schema(responses=_channel_response("ChannelPatchedResponse"))
    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, partial=True, **kwargs)

    @extend_schema(
        responses={
            200: inline_serializer(
                "ChannelDeletedResponse", {"success": serializers.BooleanField(), "deleted": serializers.IntegerField()}
            ),
            409: ErrorSerializer,
        }
    )
    def destroy(self, request, *args, **kwargs):
        channel = self.get_object()
        pk = channel.pk
        try:
            with transaction.atomic():
                record_audit(
                    actor=request.user,
                    action=AuditAction.DELETE,
                    obj=channel,
                    before=_audit_view(channel),
                    **audit_context(request),
                )
                channel.delete()
        except ProtectedError as exc:
            raise Conflict(
                f"Channel {channel.key!r} has notification history, which would be lost; disable it instead."
            ) from exc
        return ok(deleted=pk)
