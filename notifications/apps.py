"""The notifications app; keeps the per-transaction lookups of services.py honest."""

from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_save


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from alerts.models import AlertRule, EscalationPolicy, EscalationStep

        from .models import NotificationChannel
        from .services import forget_lookups

        for model in (NotificationChannel, AlertRule, EscalationPolicy, EscalationStep):
            post_save.connect(forget_lookups, sender=model, dispatch_uid=f"notifications-lookups-save-{model.__name__}")
            post_delete.connect(
                forget_lookups, sender=model, dispatch_uid=f"notifications-lookups-delete-{model.__name__}"
            )
        for through in (AlertRule.channels.through, EscalationStep.channels.through):
            m2m_changed.connect(
                forget_lookups, sender=through, dispatch_uid=f"notifications-lookups-m2m-{through.__name__}"
            )
