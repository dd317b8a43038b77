"""Security of the dashboard: headers on every page, secure cookies over HTTPS, CSRF on
forms and the rate-limited log-in."""

import pytest
from django.test import Client
from django.urls import reverse

from dashboard.security import CONTENT_SECURITY_POLICY


@pytest.mark.django_db
def test_pages_send_the_security_headers(login) -> None:
    response = login("viewer").get(reverse("dashboard-overview"))
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_pages_have_no_inline_script(fleet, login) -> None:
    client = login("operator")
    for name in ("dashboard-overview", "dashboard-alerts", "dashboard-metrics", "dashboard-health", "dashboard-logs"):
        html = client.get(reverse(name)).content.decode()
        for chunk in html.split("<script")[1:]:
            head = chunk.split(">", 1)[0]
            assert " src=" in head, f"inline script on {name}: {chunk[:80]}"
        assert " onclick=" not in html and " style=" not in html


@pytest.mark.django_db
def test_login_page_has_csrf_and_cookies_are_secure_over_https(users) -> None:
    client = Client(enforce_csrf_checks=True)
    page = client.get(reverse("login"), secure=True)
    assert 'name="csrfmiddlewaretoken"' in page.content.decode()
    assert page.cookies["csrftoken"]["secure"]
    token = page.cookies["csrftoken"].value
    response = client.post(
        reverse("login"),
        {"username": "viewer", "password": "correct horse battery", "csrfmiddlewaretoken": token},
        secure=True,
        headers={"Referer": "https://testserver/login/"},  # Django's HTTPS CSRF check wants one
    )
    assert response.status_code == 302
    assert response.cookies["sessionid"]["secure"] and response.cookies["sessionid"]["httponly"]


@pytest.mark.django_db
def test_login_without_csrf_token_is_refused(users) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("login"), {"username": "viewer", "password": "correct horse battery"})
    assert response.status_code == 403


@pytest.mark.django_db
def test_login_is_limited_per_account(users, settings) -> None:
    settings.LOGIN_FAILURES_PER_ACCOUNT = 3
    for n in range(3):
        client = Client(REMOTE_ADDR=f"10.0.0.{n}")  # other addresses: only the account counts
        assert client.post(reverse("login"), {"username": "viewer", "password": "wrong"}).status_code == 200
    blocked = Client(REMOTE_ADDR="10.0.0.99").post(
        reverse("login"), {"username": "Viewer", "password": "correct horse battery"}
    )
    assert blocked.status_code == 429 and "Too many failed log-ins" in blocked.content.decode()
    assert "_auth_user_id" not in blocked.client.session
    other = Client(REMOTE_ADDR="10.0.0.99").post(
        reverse("login"), {"username": "operator", "password": "correct horse battery"}
    )
    assert other.status_code == 302


@pytest.mark.django_db
def test_login_is_limited_per_address_and_forwarded_for_does_not_reset_it(users, settings) -> None:
    settings.LOGIN_FAILURES_PER_IP = 3
    client = Client(REMOTE_ADDR="10.1.1.1")
    for n in range(3):
        client.post(reverse("login"), {"username": f"nobody{n}", "password": "wrong"})
    response = client.post(
        reverse("login"),
        {"username": "operator", "password": "correct horse battery"},
        HTTP_X_FORWARDED_FOR="192.0.2.7",
    )
    assert response.status_code == 429
    assert (
        Client(REMOTE_ADDR="10.1.1.2")
        .post(reverse("login"), {"username": "operator", "password": "correct horse battery"})
        .status_code
        == 302
    )


@pytest.mark.django_db
def test_logout_ends_the_session(login) -> None:
    client = login("viewer")
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("dashboard-overview")).status_code == 302
