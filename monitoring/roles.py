"""Roles: viewer < operator < admin. A user's role is the highest group it belongs to;
superusers are admins. API keys carry their owner's role (or read-only)."""

from django.contrib.auth.models import AnonymousUser, User

from .choices import Role

ROLE_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


def user_role(user: User | AnonymousUser | None) -> Role | None:
    """The highest role of `user`, or None for anonymous users and users with no role."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.ADMIN
    cached = getattr(user, "_monitoring_role", "unset")
    if cached != "unset":
        return cached
    names = set(user.groups.values_list("name", flat=True))
    role = None
    for candidate in (Role.ADMIN, Role.OPERATOR, Role.VIEWER):
        if candidate.value in names:
            role = candidate
            break
    user._monitoring_role = role
    return role


def has_role(user: User | AnonymousUser | None, needed: Role) -> bool:
    role = user_role(user)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[needed]


# What each role's group may do in the Django admin, as (app_label, codename) patterns:
# "view_*" is every view permission of the app. Each role includes the ones below it.
ROLE_APPS = ("monitoring", "alerts", "healthchecks", "notifications")
OPERATOR_EXTRA = (
    ("alerts", "acknowledge_alert"),
    ("alerts", "resolve_alert"),
    ("alerts", "add_silence"),
    ("alerts", "change_silence"),
    ("healthchecks", "run_healthcheck"),
    ("notifications", "test_notificationchannel"),
)
ADMIN_APPS = ROLE_APPS + ("django_celery_beat", "auth")


def sync_role_groups(group_model, permission_model) -> None:
    """Create the viewer, operator and admin groups and give each its permissions.
    Takes the models so the data migration can pass its historical ones."""
    from django.db.models import Q

    view = permission_model.objects.filter(content_type__app_label__in=ROLE_APPS, codename__startswith="view_")
    extra = Q(pk__in=[])
    for app_label, codename in OPERATOR_EXTRA:
        extra |= Q(content_type__app_label=app_label, codename=codename)
    operator = permission_model.objects.filter(
        Q(content_type__app_label__in=ROLE_APPS, codename__startswith="view_") | extra
    )
    admin = permission_model.objects.filter(content_type__app_label__in=ADMIN_APPS)
    for role, perms in ((Role.VIEWER, view), (Role.OPERATOR, operator), (Role.ADMIN, admin)):
        group, _ = group_model.objects.get_or_create(name=role.value)
        group.permissions.set(list(perms))
