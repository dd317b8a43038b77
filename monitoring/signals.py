"""Keeps the periodic schedule in step with the database: after `migrate`, and when the
global settings change (so a new interval takes effect without a restart)."""

from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django_celery_beat.models import PeriodicTask

from .models import GlobalSettings
from .schedule import INTERVAL_FIELDS, apply_interval_changes, sync_periodic_tasks


def sync_schedule_after_migrate(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate: create the missing periodic task rows, once both tables exist (a
    partial `migrate app 0001` may not have created them yet)."""
    if using != DEFAULT_DB_ALIAS:
        return
    tables = set(connections[using].introspection.table_names())
    if {PeriodicTask._meta.db_table, GlobalSettings._meta.db_table} <= tables:
        sync_periodic_tasks()


def remember_intervals(
    sender: type[GlobalSettings], instance: GlobalSettings, raw: bool = False, **kwargs: Any
) -> None:
    """pre_save: keep the intervals as stored, to see after the save which ones changed."""
    if raw:  # loaddata: leave fixtures alone
        return
    stored = GlobalSettings.objects.filter(pk=1).values(*INTERVAL_FIELDS).first()
    instance._intervals_before = stored or {}


def apply_changed_intervals(
    sender: type[GlobalSettings], instance: GlobalSettings, raw: bool = False, **kwargs: Any
) -> None:
    """post_save: carry changed global intervals to their periodic task rows."""
    if raw:
        return
    apply_interval_changes(getattr(instance, "_intervals_before", {}), instance)
