"""Roles: a user's role is their highest group (superusers are admins); the API's permission
classes let each role do what it should and no more; the groups' model permissions make
the admin agree."""

import pytest
from django.contrib.auth.models import AnonymousUser, Group, User
from django.urls import path
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet

from config import urls as project_urls
from monitoring.api_frame import ok
from monitoring.choices import Role
from monitoring.permissions import IsAdmin, IsOperator, IsViewer, ReadViewerWriteAdmin
from monitoring.roles import has_role, user_role

pytestmark = pytest.mark.django_db


def view_for(permission) -> type[APIView]:
    class RoleView(APIView):
        permission_classes = [permission]

        def get(self, request):
            return ok()

        def post(self, request):
            return ok()

    return RoleView


class RuleViewSet(ViewSet):
    """Viewers read, operators silence, admins configure."""

    permission_classes = [ReadViewerWriteAdmin]
    operator_actions = ("silence",)

    def list(self, request):
        return ok()

    def create(self, request):
        return ok()

    def silence(self, request):
        return ok()


urlpatterns = [
    path("api/_test/viewer", view_for(IsViewer).as_view()),
    path("api/_test/operator", view_for(IsOperator).as_view()),
    path("api/_test/admin", view_for(IsAdmin).as_view()),
    path("api/_test/rules", RuleViewSet.as_view({"get": "list", "post": "create"})),
    path("api/_test/rules/silence", RuleViewSet.as_view({"post": "silence"})),
    *project_urls.urlpatterns,
]


@pytest.fixture
def test_urls(settings):
    settings.ROOT_URLCONF = __name__


ROLES = [None, "norole", "viewer", "operator", "admin"]

# (method, path) -> the status each of ROLES gets.
MATRIX = {
    ("get", "/api/_test/viewer"): [401, 403, 200, 200, 200],
    ("post", "/api/_test/viewer"): [401, 403, 200, 200, 200],
    ("get", "/api/_test/operator"): [401, 403, 403, 200, 200],
    ("post", "/api/_test/operator"): [401, 403, 403, 200, 200],
    ("get", "/api/_test/admin"): [401, 403, 403, 403, 200],
    ("get", "/api/_test/rules"): [401, 403, 200, 200, 200],
    ("post", "/api/_test/rules"): [401, 403, 403, 403, 200],
    ("post", "/api/_test/rules/silence"): [401, 403, 403, 200, 200],
    ("get", "/api/status"): [401, 403, 200, 200, 200],
}


@pytest.mark.parametrize(("method", "url"), list(MATRIX), ids=[f"{m} {u}" for m, u in MATRIX])
def test_each_role_gets_what_its_permission_allows(test_urls, client_for, method, url):
    got = []
    for role in ROLES:
        response = getattr(client_for(role), method)(url, {}, format="json")
        got.append(response.status_code)
        if response.status_code != 200:
            assert response.json()["success"] is False
    assert got == MATRIX[(method, url)]


def test_session_login_carries_the_role_too(test_urls, client, users):
    client.force_login(users["operator"])
    assert client.get("/api/_test/operator").status_code == 200
    assert client.get("/api/_test/admin").status_code == 403


@pytest.fixture
def superuser() -> User:
    return User.objects.create_superuser("root", "root@example.com", "correct horse battery")


def test_user_role_is_the_highest_group(users, superuser):
    assert [user_role(users[name]) for name in ("viewer", "operator", "admin", "norole")] == [
        Role.VIEWER,
        Role.OPERATOR,
        Role.ADMIN,
        None,
    ]
    both = User.objects.create_user("both")
    both.groups.add(Group.objects.get(name="viewer"), Group.objects.get(name="operator"))
    assert user_role(both) == Role.OPERATOR
    assert user_role(superuser) == Role.ADMIN
    assert user_role(AnonymousUser()) is None
    assert user_role(None) is None


def test_inactive_users_have_no_role(users):
    users["admin"].is_active = False
    assert user_role(users["admin"]) is None
    assert not has_role(users["admin"], Role.VIEWER)


def test_role_order(users):
    assert has_role(users["operator"], Role.VIEWER)
    assert has_role(users["operator"], Role.OPERATOR)
    assert not has_role(users["operator"], Role.ADMIN)
    assert has_role(users["admin"], Role.OPERATOR)


def test_groups_give_the_admin_the_same_roles(users):
    viewer = User.objects.get(pk=users["viewer"].pk)
    operator = User.objects.get(pk=users["operator"].pk)
    admin = User.objects.get(pk=users["admin"].pk)
    assert viewer.has_perm("alerts.view_alert")
    assert not viewer.has_perm("alerts.acknowledge_alert")
    assert not viewer.has_perm("monitoring.change_monitoringtarget")
    assert operator.has_perm("alerts.acknowledge_alert")
    assert operator.has_perm("alerts.resolve_alert")
    assert operator.has_perm("alerts.add_silence")
    assert operator.has_perm("healthchecks.run_healthcheck")
    assert not operator.has_perm("alerts.change_alertrule")
    assert admin.has_perm("alerts.change_alertrule")
    assert admin.has_perm("notifications.change_notificationchannel")
    assert admin.has_perm("django_celery_beat.change_periodictask")
