"""Fixtures of the fault-injection tests: the migrated template database (once per session),
a stack per test (fresh database copy, own Redis, its processes killed and checked gone at
the end), and the local webhook and PagerDuty receivers."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.ops.harness import OwnRedis, PacedReceiver, Stack, TemplateDatabase


@pytest.fixture(scope="session")
def template_database(tmp_path_factory) -> Iterator[TemplateDatabase]:
    template = TemplateDatabase(tmp_path_factory.mktemp("faults-template"))
    template.create()
    yield template
    template.drop()


@pytest.fixture
def stack(template_database, tmp_path) -> Iterator[Stack]:
    # A short directory of its own: the embedded mode's unix socket lives in it, and
    # socket paths are limited to ~107 bytes.
    var_dir = Path(tempfile.mkdtemp(prefix="faults-", dir="/tmp"))
    database_url = None
    try:
        database_url = template_database.copy(var_dir)
        redis = OwnRedis(var_dir, tcp=not settings.EMBEDDED_REDIS)
        running = Stack(var_dir=var_dir, log_dir=tmp_path, database_url=database_url, redis=redis)
        try:
            redis.start()
            yield running
        finally:
            running.close()
            leftovers = running.leftovers()
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
        if database_url is not None:
            template_database.drop_copy(database_url)
    assert leftovers == [], f"processes left running: {leftovers}"


@pytest.fixture
def webhook_receiver() -> Iterator[PacedReceiver]:
    server = PacedReceiver()
    yield server
    server.close()


@pytest.fixture
def pagerduty_receiver() -> Iterator[PacedReceiver]:
    server = PacedReceiver()
    yield server
    server.close()
