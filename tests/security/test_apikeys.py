"""API keys, beyond tests/monitoring/test_apikeys.py: the randomness of keys, the HMAC key
kept apart from SECRET_KEY (a copy of the database without the pepper verifies nothing),
the plain key shown once by the admin, revocation in the admin effective at the next
request, and read-only keys refused by real write endpoints."""

import base64
import string
from collections import Counter

import pytest
from django.test import Client

from monitoring.apikeys import KEY_PREFIX, create_api_key
from monitoring.choices import AuditAction, AuditSource
from monitoring.models import ApiKey, AuditLogEntry

pytestmark = pytest.mark.django_db

URLSAFE = set(string.ascii_letters + string.digits + "-_")


def test_keys_carry_at_least_128_random_bits(users):
    keys = [create_api_key(user=users["viewer"], name=f"k{n}").plain for n in range(300)]
    bodies = [key.removeprefix(KEY_PREFIX) for key in keys]
    assert all(key.startswith("mon_") for key in keys)
    assert len(set(bodies)) == len(bodies)
    for body in bodies:
        assert set(body) <= URLSAFE
        assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) * 8 >= 128
    # Drawn from the whole alphabet, evenly: 300 x 32 characters give each of the 64 about 150.
    counts = Counter("".join(bodies))
    assert set(counts) == URLSAFE
    assert max(counts.values()) < 3 * min(counts.values())


def test_the_hmac_key_is_the_pepper_not_secret_key(settings, users, api_client):
    settings.MONITORING_API_KEY_PEPPER = "pepper-from-a-vault"
    plain = create_api_key(user=users["viewer"], name="ci").plain
    api_client.credentials(HTTP_X_API_KEY=plain)
    assert api_client.get("/api/status").status_code == 200
    # The same rows with another pepper (a stolen database without the secret): nothing verifies.
    settings.MONITORING_API_KEY_PEPPER = "another-pepper"
    assert api_client.get("/api/status").status_code == 401
    settings.MONITORING_API_KEY_PEPPER = "pepper-from-a-vault"
    assert api_client.get("/api/status").status_code == 200
    # Changing SECRET_KEY (sessions, signing) does not touch keys made under a pepper.
    settings.SECRET_KEY = "a-rotated-secret-key-" + "x" * 40
    assert api_client.get("/api/status").status_code == 200


def admin_client(users) -> Client:
    client = Client()
    client.force_login(users["admin"])
    return client


def test_the_admin_shows_a_new_key_once(users):
    client = admin_client(users)
    response = client.post(
        "/admin/monitoring/apikey/add/",
        {"user": users["operator"].pk, "name": "grafana", "read_only": "on"},
        follow=True,
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="grafana")
    page = response.content.decode()
    shown = [word for word in page.replace("<", " ").split() if word.startswith(key.prefix)]
    assert len(shown) == 1 and shown[0].startswith("mon_") and len(shown[0]) == 36
    plain = shown[0]
    assert plain not in client.get(f"/admin/monitoring/apikey/{key.pk}/change/").content.decode()
    assert plain not in client.get("/admin/monitoring/apikey/").content.decode()
    assert plain not in str(ApiKey.objects.filter(pk=key.pk).values().get())
    api = Client(HTTP_X_API_KEY=plain)
    assert api.get("/api/status").status_code == 200
    assert api.post("/api/health-checks", {}, content_type="application/json").status_code == 403  # read-only


def test_revoking_in_the_admin_takes_effect_on_the_next_request(users):
    new = create_api_key(user=users["operator"], name="pager")
    api = Client(HTTP_X_API_KEY=new.plain)
    assert api.get("/api/status").status_code == 200
    response = admin_client(users).post(
        "/admin/monitoring/apikey/", {"action": "revoke_selected", "_selected_action": [new.api_key.pk]}
    )
    assert response.status_code == 302
    assert api.get("/api/status").status_code == 401
    entry = AuditLogEntry.objects.get(action=AuditAction.REVOKE)
    assert (entry.source, entry.actor_name, entry.object_id) == (AuditSource.ADMIN, "admin", str(new.api_key.pk))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/metrics", {"samples": []}),
        ("post", "/api/devices/register", {"device_id": "d-1"}),
        ("post", "/api/health-checks", {"name": "x", "key": "x", "kind": "tcp"}),
        ("post", "/api/discovered-targets/1/approve", {}),
    ],
)
def test_a_read_only_key_never_writes_whatever_its_owner(users, api_client, method, path, body):
    plain = create_api_key(user=users["admin"], name="dashboards", read_only=True).plain
    api_client.credentials(HTTP_X_API_KEY=plain)
    response = getattr(api_client, method)(path, body, format="json")
    assert response.status_code == 403
    assert AuditLogEntry.objects.filter(action__in=["create", "approve"]).count() == 0


def test_a_key_for_a_write_is_recorded_and_its_last_use_set(users, api_client):
    new = create_api_key(user=users["admin"], name="ci-deploy")
    api_client.credentials(HTTP_X_API_KEY=new.plain)
    response = api_client.post(
        "/api/health-checks",
        {"name": "Broker", "key": "broker", "kind": "tcp", "config": {"host": "127.0.0.1", "port": 1883}},
        format="json",
    )
    assert response.status_code == 201
    assert AuditLogEntry.objects.get(action=AuditAction.CREATE).api_key_name == "ci-deploy"
    new.api_key.refresh_from_db()
    assert new.api_key.last_used_at is not None
