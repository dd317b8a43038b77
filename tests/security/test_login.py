"""Log-in and API protection: failed log-ins limited per address and per account on the
dashboard and the admin (a forged X-Forwarded-For changes nothing), the same answer and the
same password-hashing work for an unknown user and a wrong password, sessions ended by a
password change, `check --deploy` clean in production, security headers on every response."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.test import Client, RequestFactory

from monitoring.audit import client_ip

pytestmark = pytest.mark.django_db

BASE_DIR = Path(__file__).resolve().parents[2]
LOGIN_PAGES = ["/login/", "/admin/login/"]


def attempt(path: str, username: str, password: str, address: str = "203.0.113.5", **headers) -> int:
    client = Client(REMOTE_ADDR=address, **headers)
    response = client.post(path, {"username": username, "password": password})
    if response.status_code == 429:
        assert "Too many failed log-ins" in response.content.decode()
    return response.status_code


@pytest.fixture
def limits(settings, make_user):
    settings.LOGIN_FAILURES_PER_ACCOUNT = 3
    settings.LOGIN_FAILURES_PER_IP = 5
    settings.LOGIN_FAILURE_WINDOW = 900
    for name in ("alice", "bob"):  # staff, so that the admin's log-in lets them in too
        make_user(name, "admin", is_staff=True)
    return settings


@pytest.mark.parametrize("path", LOGIN_PAGES)
def test_an_account_is_locked_after_its_failures_whatever_the_address(limits, path):
    for n in range(3):
        assert attempt(path, "alice", "wrong", address=f"198.51.100.{n}") == 200
    # Now even the right password from a fresh address is not checked.
    assert attempt(path, "alice", "correct horse battery", address="198.51.100.99") == 429
    assert attempt(path, "bob", "correct horse battery", address="198.51.100.98") == 302  # others unaffected


@pytest.mark.parametrize("path", LOGIN_PAGES)
def test_an_address_is_locked_after_its_failures_and_a_forged_forwarded_for_changes_nothing(limits, path):
    for n in range(5):
        assert attempt(path, f"guess{n}", "wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}") == 200
    assert attempt(path, "bob", "correct horse battery", HTTP_X_FORWARDED_FOR="10.9.9.9") == 429
    assert attempt(path, "bob", "correct horse battery", address="203.0.113.6") == 302


def test_the_forwarded_address_counts_only_from_trusted_proxies(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.8")
    assert client_ip(request) == "10.0.0.2"  # no trusted proxy: the peer
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert client_ip(request) == "192.0.2.8"  # what our proxy saw; 6.6.6.6 is the client's claim


class CountingHasher(MD5PasswordHasher):
    """Counts the password hashes computed (encode for a new hash, verify for a check)."""

    algorithm = "counting_md5"
    hashes = 0

    def encode(self, password, salt):
        CountingHasher.hashes += 1
        return super().encode(password, salt)


CSRF_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')


@pytest.mark.parametrize("path", LOGIN_PAGES)
def test_unknown_user_and_wrong_password_get_the_same_answer_and_the_same_work(settings, make_user, path):
    settings.PASSWORD_HASHERS = ["tests.security.test_login.CountingHasher"]
    make_user("zebulon", is_staff=True)
    answers, work = [], []
    for username in ("zebulon", "quintus"):  # an account, and no account
        CountingHasher.hashes = 0
        response = Client().post(path, {"username": username, "password": "wrong"})
        page = CSRF_TOKEN.sub("", response.content.decode()).replace(username, "USER")
        answers.append((response.status_code, page))
        work.append(CountingHasher.hashes)
    assert answers[0] == answers[1]
    assert work == [1, 1]  # Django hashes the password for an unknown user too


def test_changing_the_password_ends_the_other_sessions(users):
    browser = Client()
    assert browser.post("/login/", {"username": "operator", "password": "correct horse battery"}).status_code == 302
    assert browser.get("/").status_code == 200
    user = users["operator"]
    user.set_password("a new long passphrase")
    user.save()
    response = browser.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_", "SESSION_", "CSRF_"))},
        "DEBUG": "false",
        "MONITORING_PUBLIC_URL": "https://monitoring.example.com",
        "ALLOWED_HOSTS": "monitoring.example.com",
        "SECRET_KEY": "k" * 20 + "production-secret-key-with-enough-entropy-0123456789",
        "MONITORING_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    "path", ["/login/", "/", "/admin/login/", "/api/status", "/api/no-such-endpoint", "/healthz", "/metrics"]
)
def test_security_headers_on_every_response(path):
    response = Client().get(path)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    if not path.startswith("/admin/"):  # the admin's templates carry inline scripts
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_hsts_is_sent_over_https_in_production(settings):
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_SSL_REDIRECT = True
    response = Client().get("/healthz", secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    assert Client().get("/healthz").status_code == 200  # probes over plain HTTP are not redirected
    assert Client().get("/login/").status_code == 301


def test_anonymous_api_calls_are_throttled_by_address_not_by_forwarded_for(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "anon": "3/minute",
            "heartbeat": "3/minute",
        },
    }
    url = "/api/heartbeat/00000000-0000-0000-0000-000000000000"  # open to anonymous callers
    codes = [
        Client(REMOTE_ADDR="203.0.113.77", HTTP_X_FORWARDED_FOR=f"10.1.1.{n}").get(url).status_code for n in range(4)
    ]
    assert codes == [404, 404, 404, 429]
