"""Settings of the Daphne process the browser tests start: the project's, plus the fast
password hasher the test users are created with (tests/conftest.py)."""

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
