"""What every dashboard page shares: the role check, the three ways a page answers (the
whole page, the live part that the page swaps in without a reload, or the JSON of what it
shows) and the context of the layout."""

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import render

from monitoring.choices import Role
from monitoring.roles import has_role, user_role

FRAGMENT_HEADER = "X-Dashboard-Fragment"


def page_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A page for people with a role: anonymous visitors go to the login page, a user
    without any role is refused."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        request.role = user_role(request.user)
        if request.role is None:
            return HttpResponseForbidden("Your account has no role here; ask an admin for one.")
        return view(request, *args, **kwargs)

    return wrapped


def _role_action(role: Role, refusal: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A POST-only action for `role` and above, refused (403) for anyone else whatever the
    page showed them."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != "POST":
                return HttpResponse("Use POST.", status=405, headers={"Allow": "POST"})
            if not request.user.is_authenticated:
                return HttpResponse("Log in first.", status=403)
            if not has_role(request.user, role):
                return HttpResponse(refusal, status=403)
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


# Acting on alerts and checks: operators and admins.
operator_action = _role_action(Role.OPERATOR, "Only operators and admins may do this.")
# Changing configuration (approving a discovered target): admins only.
admin_action = _role_action(Role.ADMIN, "Only admins may do this.")


class SafeEncoder(DjangoJSONEncoder):
    """JSON without NaN or infinities (which JSON cannot carry): they become null."""

    def iterencode(self, o: Any, _one_shot: bool = False):
        return super().iterencode(_finite(o), _one_shot)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_json(data: Any) -> str:
    return json.dumps(data, cls=SafeEncoder)


def respond(
    request: HttpRequest, page: str, context: dict[str, Any], export: Callable[[], dict[str, Any]]
) -> HttpResponse:
    """The page `dashboard/<page>.html`, its live part `dashboard/<page>_live.html` when the
    page's script asks for it, or `export()` as a JSON download with `?format=json`."""
    if request.GET.get("format") == "json":
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        response = JsonResponse(
            {"page": page, "exported_at": datetime.now(UTC).isoformat(), **export()},
            encoder=SafeEncoder,
            json_dumps_params={"indent": 2},
        )
        response["Content-Disposition"] = f'attachment; filename="monitoring-{page}-{stamp}.json"'
        return response
    context = {**context, "page": page, "role": request.role, "can_operate": has_role(request.user, Role.OPERATOR)}
    if request.headers.get(FRAGMENT_HEADER):
        return render(request, f"dashboard/{page}_live.html", context)
    return render(request, f"dashboard/{page}.html", context)
