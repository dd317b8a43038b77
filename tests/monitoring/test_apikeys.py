"""API keys: random, stored only as an HMAC, found by prefix, revocable and expiring with
effect on the next request, read-only when asked, last use recorded; the createapikey and
revokeapikey commands."""

import hashlib
import hmac
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import path
from django.utils import timezone
from rest_framework.views import APIView

from config import urls as project_urls
from monitoring.api_frame import ok
from monitoring.apikeys import PREFIX_LENGTH, create_api_key, find_api_key, hash_key, key_prefix
from monitoring.auth import LAST_USED_RESOLUTION
from monitoring.choices import AuditAction, AuditSource
from monitoring.models import ApiKey, AuditLogEntry
from monitoring.permissions import ReadViewerWriteAdmin

pytestmark = pytest.mark.django_db


class ConfigView(APIView):
    permission_classes = [ReadViewerWriteAdmin]

    def get(self, request):
        return ok(read=True)

    def post(self, request):
        return ok(written=True)


urlpatterns = [path("api/_test/config", ConfigView.as_view()), *project_urls.urlpatterns]


@pytest.fixture
def test_urls(settings):
    settings.ROOT_URLCONF = __name__


def test_a_new_key_has_192_bits_and_the_mon_prefix(users):
    plains = {create_api_key(user=users["viewer"], name=f"k{i}").plain for i in range(20)}
    assert len(plains) == 20
    for plain in plains:
        assert plain.startswith("mon_")
        assert len(plain) == 4 + 32  # 24 random bytes, url-safe base64


def test_the_database_holds_only_the_prefix_and_an_hmac(users, settings):
    settings.MONITORING_API_KEY_PEPPER = "a-pepper-of-its-own"
    new = create_api_key(user=users["viewer"], name="ci")
    row = ApiKey.objects.filter(pk=new.api_key.pk).values().get()
    assert new.plain not in [str(v) for v in row.values()]
    assert row["prefix"] == new.plain[:PREFIX_LENGTH]
    expected = hmac.new(b"a-pepper-of-its-own", new.plain.encode(), hashlib.sha256).hexdigest()
    assert row["hashed_key"] == expected
    # Without the pepper the HMAC key is derived from SECRET_KEY, never SECRET_KEY itself.
    settings.MONITORING_API_KEY_PEPPER = ""
    assert hash_key(new.plain) != expected
    assert hash_key(new.plain) != hmac.new(settings.SECRET_KEY.encode(), new.plain.encode(), hashlib.sha256).hexdigest()


def test_lookup_by_prefix_compares_the_hmac(users, django_assert_max_num_queries):
    # Two keys sharing a prefix (imported keys may): each finds itself, a third does not.
    first = create_api_key(user=users["viewer"], name="a", plain="shared-prefix-key-one-1234").api_key
    second = create_api_key(user=users["admin"], name="b", plain="shared-prefix-key-two-1234").api_key
    assert key_prefix("shared-prefix-key-one-1234") == key_prefix("shared-prefix-key-two-1234")
    with django_assert_max_num_queries(1):
        assert find_api_key("shared-prefix-key-one-1234") == first
    assert find_api_key("shared-prefix-key-two-1234") == second
    assert find_api_key("shared-prefix-key-six-1234") is None
    assert find_api_key("short") is None


def test_revocation_takes_effect_on_the_next_request(api_client, users):
    new = create_api_key(user=users["viewer"], name="ci")
    api_client.credentials(HTTP_X_API_KEY=new.plain)
    assert api_client.get("/api/status").status_code == 200
    call_command("revokeapikey", "--prefix", new.api_key.prefix, stdout=StringIO())
    response = api_client.get("/api/status")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid, revoked or expired API key."


def test_expired_key_is_refused_and_unexpired_key_works(api_client, users):
    past = create_api_key(user=users["viewer"], name="old", expires_at=timezone.now() - timedelta(seconds=1))
    future = create_api_key(user=users["viewer"], name="new", expires_at=timezone.now() + timedelta(days=1))
    api_client.credentials(HTTP_X_API_KEY=past.plain)
    assert api_client.get("/api/status").status_code == 401
    api_client.credentials(HTTP_X_API_KEY=future.plain)
    assert api_client.get("/api/status").status_code == 200


def test_key_of_an_inactive_user_is_refused(api_client, users):
    new = create_api_key(user=users["admin"], name="ci")
    users["admin"].is_active = False
    users["admin"].save()
    api_client.credentials(HTTP_X_API_KEY=new.plain)
    assert api_client.get("/api/status").status_code == 401


def test_read_only_key_of_an_admin_reads_but_never_writes(test_urls, api_client, users):
    new = create_api_key(user=users["admin"], name="dashboards", read_only=True)
    api_client.credentials(HTTP_X_API_KEY=new.plain)
    assert api_client.get("/api/_test/config").status_code == 200
    response = api_client.post("/api/_test/config", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This API key is read-only."
    full = create_api_key(user=users["admin"], name="full")
    api_client.credentials(HTTP_X_API_KEY=full.plain)
    assert api_client.post("/api/_test/config", {}, format="json").status_code == 200


def test_bearer_header_works_like_x_api_key(api_client, api_keys):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_keys['viewer']}")
    assert api_client.get("/api/status").status_code == 200
    api_client.credentials(HTTP_AUTHORIZATION=f"Basic {api_keys['viewer']}")
    assert api_client.get("/api/status").status_code == 401


def test_last_use_is_recorded_at_most_once_a_minute(api_client, users):
    new = create_api_key(user=users["viewer"], name="ci")
    assert new.api_key.last_used_at is None
    api_client.credentials(HTTP_X_API_KEY=new.plain)
    api_client.get("/api/status")
    new.api_key.refresh_from_db()
    first_use = new.api_key.last_used_at
    assert first_use is not None and timezone.now() - first_use < timedelta(seconds=30)
    api_client.get("/api/status")
    new.api_key.refresh_from_db()
    assert new.api_key.last_used_at == first_use  # within the minute: no write
    long_ago = timezone.now() - LAST_USED_RESOLUTION - timedelta(seconds=5)
    ApiKey.objects.filter(pk=new.api_key.pk).update(last_used_at=long_ago)
    api_client.get("/api/status")
    new.api_key.refresh_from_db()
    assert new.api_key.last_used_at > long_ago + LAST_USED_RESOLUTION


# --- createapikey / revokeapikey ----------------------------------------------------------


def test_createapikey_prints_the_key_alone_on_the_last_line(api_client, users):
    out = StringIO()
    call_command("createapikey", "--user", "operator", "--name", "deploy", stdout=out)
    lines = out.getvalue().strip().splitlines()
    plain = lines[-1]
    assert plain.startswith("mon_") and " " not in plain
    key = ApiKey.objects.get(name="deploy")
    assert key.user == users["operator"]
    assert key.hashed_key == hash_key(plain)
    assert "operator" in lines[0]
    api_client.credentials(HTTP_X_API_KEY=plain)
    assert api_client.get("/api/status").status_code == 200
    entry = AuditLogEntry.objects.get(action=AuditAction.CREATE)
    assert (entry.source, entry.object_id) == (AuditSource.CLI, str(key.pk))
    assert entry.actor_name.endswith("(shell)") or entry.actor_name == "shell"


def test_createapikey_read_only_with_expiry(users):
    out = StringIO()
    call_command(
        "createapikey", "--user", "admin", "--name", "grafana", "--read-only", "--expires-days", "30", stdout=out
    )
    key = ApiKey.objects.get(name="grafana")
    assert key.read_only is True
    assert timedelta(days=29, hours=23) < key.expires_at - timezone.now() <= timedelta(days=30)
    assert "read-only" in out.getvalue()


def test_createapikey_for_an_unknown_user_exits_2(users):
    with pytest.raises(CommandError) as failure:
        call_command("createapikey", "--user", "nobody", "--name", "x", stdout=StringIO())
    assert failure.value.returncode == 2
    assert "nobody" in str(failure.value)
    assert not ApiKey.objects.exists()


def test_revokeapikey_by_name_and_an_unknown_prefix(users):
    create_api_key(user=users["viewer"], name="shared-name")
    create_api_key(user=users["operator"], name="shared-name")
    out = StringIO()
    call_command("revokeapikey", "--name", "shared-name", "--user", "viewer", stdout=out)
    assert ApiKey.objects.get(user=users["viewer"]).revoked_at is not None
    assert ApiKey.objects.get(user=users["operator"]).revoked_at is None
    assert "Revoked 'shared-name'" in out.getvalue()
    assert AuditLogEntry.objects.filter(action=AuditAction.REVOKE, source=AuditSource.CLI).count() == 1
    with pytest.raises(CommandError) as failure:
        call_command("revokeapikey", "--prefix", "mon_nothing", stdout=StringIO())
    assert failure.value.returncode == 2
