"""Role permission classes for the API: viewers read, operators act on alerts and checks,
admins configure. A read-only API key never writes, whatever its owner's role."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from .choices import Role
from .models import ApiKey
from .roles import has_role


def _key_allows(request) -> bool:
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey) and auth.read_only:
        return request.method in SAFE_METHODS
    return True


class _RolePermission(BasePermission):
    role: Role
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, self.role) and _key_allows(request)


class IsViewer(_RolePermission):
    role = Role.VIEWER


class IsOperator(_RolePermission):
    role = Role.OPERATOR
    message = "This needs the operator or admin role."


class IsAdmin(_RolePermission):
    role = Role.ADMIN
    message = "This needs the admin role."


class ReadViewerWriteAdmin(BasePermission):
    """Viewers read; writes need admin. Actions listed in the view's `operator_actions`
    need operator."""

    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return has_role(request.user, Role.VIEWER)
        if not _key_allows(request):
            self.message = "This API key is read-only."
            return False
        action = getattr(view, "action", None)
        if action in getattr(view, "operator_actions", ()):
            self.message = "This needs the operator or admin role."
            return has_role(request.user, Role.OPERATOR)
        self.message = "This needs the admin role."
        return has_role(request.user, Role.ADMIN)
