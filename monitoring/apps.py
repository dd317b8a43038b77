from django.apps import AppConfig
from django.db.models.signals import post_migrate, post_save, pre_save


class MonitoringConfig(AppConfig):
    name = "monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from . import signals
        from .checks import check_redis_eviction_policy

        checks.register(check_redis_eviction_policy, "redis")
        from .models import GlobalSettings

        post_migrate.connect(signals.sync_schedule_after_migrate, sender=self, dispatch_uid="monitoring-schedule-sync")
        pre_save.connect(signals.remember_intervals, sender=GlobalSettings, dispatch_uid="monitoring-schedule-before")
        post_save.connect(
            signals.apply_changed_intervals, sender=GlobalSettings, dispatch_uid="monitoring-schedule-apply"
        )

        from django.contrib.auth import signals as auth_signals

        from . import auth_audit

        auth_signals.user_logged_in.connect(auth_audit.audit_login, dispatch_uid="monitoring-audit-login")
        auth_signals.user_logged_out.connect(auth_audit.audit_logout, dispatch_uid="monitoring-audit-logout")
        auth_signals.user_login_failed.connect(auth_audit.audit_login_failure, dispatch_uid="monitoring-audit-failed")
