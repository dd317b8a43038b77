"""`manage.py dashboard`: one frame without a terminal (--once), its JSON, and the live
loop on a real pseudo-terminal, left with `q`."""

import json
import termios
import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rich.console import Console

from alerts.choices import AlertState
from alerts.models import AlertEvent
from monitoring.tui import KeyReader, run_live, take_snapshot

from .conftest import make_alert, pseudo_terminal, run

pytestmark = pytest.mark.django_db


def test_once_renders_one_frame_without_a_terminal(world):
    outcome = run("dashboard", "--once")

    assert outcome.code == 0
    frame = outcome.stdout
    assert "CRITICAL" in frame
    assert "System health" in frame and "critical 1" in frame
    assert "Firing alerts" in frame and "Service down" in frame and "target=api" in frame
    assert "Unhealthy checks" in frame and "API HTTP" in frame
    assert "Recent events" in frame and "pending → active" in frame
    assert "\x1b[" not in frame


def test_once_on_an_empty_system_says_so(db):
    frame = run("dashboard", "--once").stdout

    assert "HEALTHY" in frame
    assert "No alert is firing." in frame
    assert "Every check is healthy." in frame


def test_once_json(world):
    data = json.loads(run("dashboard", "--once", "--format", "json").stdout)

    assert data["system_health"] == "critical"
    assert data["firing"]["critical"] == 1
    assert [a["id"] for a in data["alerts"]] == [world["firing"].pk]
    assert [c["name"] for c in data["unhealthy_checks"]] == ["API HTTP"]
    assert data["events"][0]["to_state"] == "active"


def test_a_snapshot_costs_the_same_queries_for_a_large_fleet(world):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            take_snapshot(now=timezone.now())
        return len(captured)

    few = queries()
    for n in range(60):
        alert = make_alert(world["cpu"], f"many-{n}", AlertState.ACTIVE, timezone.now())
        AlertEvent.objects.create(alert=alert, from_state="pending", to_state="active")
    many = queries()
    snapshot = take_snapshot(now=timezone.now())

    assert many == few <= 12
    assert snapshot.firing["total"] == 61 and len(snapshot.alerts) == 20 and len(snapshot.events) == 12


def test_live_view_without_a_terminal_is_refused_with_advice(db):
    outcome = run("dashboard")

    assert outcome.code == 2
    assert "needs a terminal" in outcome.error and "--once" in outcome.error


@pytest.mark.parametrize("interval", ["0", "0.5", "soon", "nan"])
def test_bad_interval_is_bad_usage(db, interval):
    outcome = run("dashboard", "--interval", interval)

    assert outcome.code == 2
    assert "--interval" in outcome.error


def test_live_view_draws_full_screen_and_leaves_on_q_restoring_the_terminal(world):
    rescued = threading.Event()
    with pseudo_terminal() as terminal:
        before = termios.tcgetattr(terminal.fd)

        def rescue() -> None:  # were the first q lost, end the loop anyway, and fail below
            rescued.set()
            terminal.type(b"q")

        watchdog = threading.Timer(10, rescue)
        console = Console(file=terminal.screen, force_terminal=True, width=120, height=40)
        try:
            with KeyReader(terminal.keyboard) as keys:
                assert keys.fd == terminal.fd
                terminal.type(b"q")  # typed once the terminal is in single-key mode
                watchdog.start()
                run_live(console=console, keys=keys, interval=30)
        finally:
            watchdog.cancel()
        after = termios.tcgetattr(terminal.fd)

    assert "\x1b[?1049h" in terminal.text and "\x1b[?1049l" in terminal.text  # entered and left the alternate screen
    assert "Service down" in terminal.text and "q quits" in terminal.text
    assert after == before
    assert not rescued.is_set()
