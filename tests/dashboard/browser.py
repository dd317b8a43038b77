"""A live ASGI server and a real browser for the dashboard's browser tests: Daphne in a
subprocess on a free port, serving the test database (PostgreSQL's test database as it
is; SQLite's in-memory one copied to a file a second process can open), and Debian's
Chromium driven by Playwright."""

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
from django.db import connection, connections

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"  # tests/conftest.py's make_user


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shared_database_url(tmp_path: Path) -> Iterator[str]:
    """A DATABASE_URL for the test database that another process can open. On SQLite the
    in-memory database is copied to a file and this process switches to the file too, so
    both see each other's commits."""
    if connection.vendor != "sqlite":
        db = connection.settings_dict
        yield f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        return
    path = tmp_path / "live.sqlite3"
    connection.ensure_connection()
    with closing(sqlite3.connect(path)) as copy:
        connection.connection.backup(copy)
    original_settings, original_connection = connections.settings["default"], connections["default"]
    file_settings = {**original_settings, "NAME": str(path)}
    connections.settings["default"] = file_settings
    connections["default"] = original_connection.__class__(file_settings, "default")
    try:
        yield f"sqlite:///{path}"
    finally:
        connections["default"].close()
        connections["default"] = original_connection
        connections.settings["default"] = original_settings


class LiveServer:
    """Daphne serving config.asgi on 127.0.0.1:<port>; can be stopped and started again on
    the same port (to test reconnection)."""

    def __init__(self, database_url: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "DJANGO_SETTINGS_MODULE": "tests.dashboard.live_settings",
        }
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"daphne did not answer within {timeout} s: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def log_in(page, base_url: str, username: str) -> None:
    page.goto(base_url + "/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    try:
        page.wait_for_url(base_url + "/", timeout=30_000)
    except Exception as exc:
        raise AssertionError(f"log-in of {username} failed on {page.url}: {page.inner_text('main')[:500]}") from exc
