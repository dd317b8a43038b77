"""The terminal dashboard of `manage.py dashboard`: a snapshot of the system read from the
database (health, firing alerts by severity, unhealthy checks, recent events), its rich
layout, and the full-screen loop that refreshes it until `q` or Ctrl-C."""

import os
import select
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TextIO

from django.db import DatabaseError, close_old_connections
from django.utils import timezone
from rich.console import Console, Group, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from alerts.choices import AlertState, Severity
from healthchecks.choices import HealthStatus

from .status import system_status

SEVERITY_ORDER = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW)
SEVERITY_STYLES = {Severity.CRITICAL: "bold red", Severity.HIGH: "red", Severity.MEDIUM: "yellow", Severity.LOW: "cyan"}
# monitoring.status's system health: healthy, degraded or critical.
HEALTH_STYLES = {"healthy": "bold green", "degraded": "bold yellow", "critical": "bold white on red"}
CHECK_STYLES = {
    HealthStatus.HEALTHY: "green",
    HealthStatus.WARNING: "yellow",
    HealthStatus.CRITICAL: "bold red",
    HealthStatus.UNKNOWN: "dim",
}
STATE_STYLES = {
    AlertState.ACTIVE: "bold red",
    AlertState.ACKNOWLEDGED: "yellow",
    AlertState.PENDING: "magenta",
    AlertState.RESOLVED: "green",
}


@dataclass(frozen=True)
class DashboardSnapshot:
    """What the terminal dashboard shows, read at `taken_at`."""

    taken_at: datetime
    system_health: str
    firing: dict[str, int]  # total, unacknowledged, silenced and one count per severity
    checks: dict[str, int]  # total and one count per status, enabled checks only
    targets: dict[str, int]  # total, up, degraded, down
    alert_rules: int
    alerts: tuple[dict[str, Any], ...]  # firing alerts, worst first
    unhealthy_checks: tuple[dict[str, Any], ...]
    events: tuple[dict[str, Any], ...]  # the latest alert events, newest first

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def take_snapshot(
    *, now: datetime, alert_limit: int = 20, check_limit: int = 10, event_limit: int = 12
) -> DashboardSnapshot:
    """Read the dashboard's data: a fixed number of queries whatever the fleet's size."""
    from alerts.models import Alert
    from dashboard.queries import (
        check_counts,
        firing_by_severity,
        latest_alert_events,
        severity_order,
        target_counts,
        unhealthy_checks,
    )

    status = system_status()
    alerts = (
        Alert.objects.firing()
        .select_related("rule", "acknowledged_by")
        .annotate(rank=severity_order())
        .order_by("-rank", "fired_at", "id")[:alert_limit]
    )
    return DashboardSnapshot(
        taken_at=now,
        system_health=status.system_health,
        firing=firing_by_severity(),
        checks=check_counts(),
        targets=target_counts(),
        alert_rules=status.alert_rules,
        alerts=tuple(
            {
                "id": alert.pk,
                "severity": alert.severity,
                "state": alert.state,
                "rule": alert.rule.name,
                "labels": alert.labels,
                "value": alert.value,
                "fired_at": alert.fired_at,
                "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by_id else None,
                "silenced": alert.silenced,
            }
            for alert in alerts
        ),
        unhealthy_checks=tuple(
            {
                "id": check.pk,
                "name": check.name,
                "target": check.target.name if check.target_id else None,
                "status": check.status,
                "last_checked_at": check.last_checked_at,
                "message": check.last_result.message if check.last_result_id else "",
            }
            for check in unhealthy_checks(check_limit)
        ),
        events=tuple(
            {
                "at": event.at,
                "alert_id": event.alert_id,
                "rule": event.alert.rule.name,
                "from_state": event.from_state,
                "to_state": event.to_state,
                "actor": event.actor_name,
            }
            for event in latest_alert_events(event_limit)
        ),
    )


# --- Layout ---------------------------------------------------------------------------------------


def _clock(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    local = timezone.localtime(value)
    return (
        local.strftime("%H:%M:%S") if local.date() == timezone.localtime(now).date() else local.strftime("%m-%d %H:%M")
    )


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _header(snapshot: DashboardSnapshot | None, *, interval: float | None, error: str | None) -> Panel:
    title = Text("IoT Monitoring  ", style="bold")
    if snapshot is not None:
        health = snapshot.system_health
        title.append(f" {health.upper()} ", style=HEALTH_STYLES.get(health, "bold"))
        title.append(f"   {timezone.localtime(snapshot.taken_at):%Y-%m-%d %H:%M:%S %Z}", style="dim")
    if interval:
        title.append(f"   refresh every {interval:g} s · q quits", style="dim")
    if error:
        title.append(f"\n{error}", style="bold red")
    return Panel(title, padding=(0, 1))


def _overview(snapshot: DashboardSnapshot) -> Panel:
    firing, checks, targets = snapshot.firing, snapshot.checks, snapshot.targets
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    severities = Text()
    for severity in SEVERITY_ORDER:
        count = firing.get(severity, 0)
        severities.append(f"{severity} {count}", style=SEVERITY_STYLES[severity] if count else "dim")
        severities.append("  ")
    grid.add_row(
        "Firing alerts",
        f"{firing.get('total', 0)} ({firing.get('unacknowledged', 0)} unacknowledged, "
        f"{firing.get('silenced', 0)} silenced)",
    )
    grid.add_row("By severity", severities)
    statuses = Text()
    for status in CHECK_STYLES:
        count = checks.get(status, 0)
        statuses.append(f"{status} {count}", style=CHECK_STYLES[status] if count else "dim")
        statuses.append("  ")
    grid.add_row("Health checks", f"{checks.get('total', 0)} enabled")
    grid.add_row("", statuses)
    grid.add_row(
        "Targets",
        f"{targets.get('total', 0)}: {targets.get('up', 0)} up, {targets.get('degraded', 0)} degraded, "
        f"{targets.get('down', 0)} down",
    )
    grid.add_row("Alert rules", f"{snapshot.alert_rules} enabled")
    return Panel(grid, title="System health", title_align="left")


def _alerts(snapshot: DashboardSnapshot) -> Panel:
    if not snapshot.alerts:
        return Panel(Text("No alert is firing.", style="green"), title="Firing alerts", title_align="left")
    table = Table(expand=True, header_style="bold", box=None)
    for header, justify in (("ID", "right"), ("Severity", "left"), ("Rule", "left"), ("Labels", "left")):
        table.add_column(header, justify=justify, overflow="ellipsis", no_wrap=True)
    table.add_column("Value", justify="right", no_wrap=True)
    table.add_column("Since", no_wrap=True)
    table.add_column("State", no_wrap=True)
    for alert in snapshot.alerts:
        state = "acked by " + alert["acknowledged_by"] if alert["acknowledged_by"] else alert["state"]
        if alert["silenced"]:
            state += " (silenced)"
        table.add_row(
            str(alert["id"]),
            Text(alert["severity"], style=SEVERITY_STYLES.get(alert["severity"], "")),
            escape(alert["rule"]),
            escape(_labels(alert["labels"])),
            "-" if alert["value"] is None else f"{alert['value']:g}",
            _clock(alert["fired_at"], snapshot.taken_at),
            Text(state, style=STATE_STYLES.get(alert["state"], "")),
        )
    shown = len(snapshot.alerts)
    total = snapshot.firing.get("total", shown)
    title = f"Firing alerts ({shown} of {total})" if total > shown else "Firing alerts"
    return Panel(table, title=title, title_align="left")


def _checks(snapshot: DashboardSnapshot) -> Panel:
    if not snapshot.unhealthy_checks:
        return Panel(Text("Every check is healthy.", style="green"), title="Unhealthy checks", title_align="left")
    table = Table(expand=True, header_style="bold", box=None)
    for header in ("Check", "Target", "Status", "Last run", "Message"):
        table.add_column(header, overflow="ellipsis", no_wrap=True)
    for check in snapshot.unhealthy_checks:
        table.add_row(
            escape(check["name"]),
            escape(check["target"] or "-"),
            Text(check["status"], style=CHECK_STYLES.get(check["status"], "")),
            _clock(check["last_checked_at"], snapshot.taken_at),
            escape(check["message"] or ""),
        )
    return Panel(table, title="Unhealthy checks", title_align="left")


def _events(snapshot: DashboardSnapshot) -> Panel:
    if not snapshot.events:
        return Panel(Text("No alert events yet.", style="dim"), title="Recent events", title_align="left")
    table = Table(expand=True, header_style="bold", box=None)
    for header in ("Time", "Alert", "Rule", "Change", "By"):
        table.add_column(header, overflow="ellipsis", no_wrap=True)
    for event in snapshot.events:
        change = Text(f"{event['from_state'] or 'new'} → ")
        change.append(event["to_state"], style=STATE_STYLES.get(event["to_state"], ""))
        table.add_row(
            _clock(event["at"], snapshot.taken_at),
            str(event["alert_id"]),
            escape(event["rule"]),
            change,
            escape(event["actor"]),
        )
    return Panel(table, title="Recent events", title_align="left")


def render_dashboard(
    snapshot: DashboardSnapshot | None,
    *,
    full_screen: bool,
    interval: float | None = None,
    error: str | None = None,
) -> RenderableType:
    """The dashboard: a Layout filling the screen, or (for one frame printed without a
    terminal) the same panels one under the other."""
    header = _header(snapshot, interval=interval, error=error)
    if snapshot is None:
        return header
    panels = (_overview(snapshot), _alerts(snapshot), _checks(snapshot), _events(snapshot))
    if not full_screen:
        return Group(header, *panels)
    root = Layout()
    root.split_column(
        Layout(header, name="header", size=4 if error else 3),
        Layout(name="top", ratio=1),
        Layout(name="bottom", ratio=1),
    )
    root["top"].split_row(Layout(panels[0], ratio=2), Layout(panels[1], ratio=3))
    root["bottom"].split_row(Layout(panels[2]), Layout(panels[3]))
    return root


# --- The live loop --------------------------------------------------------------------------------


class KeyReader:
    """Single key presses from a terminal without Enter (cbreak mode, restored on exit; Ctrl-C
    still interrupts). Without a terminal on stdin it only waits."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.fd: int | None = None
        self.saved: list | None = None

    def __enter__(self) -> "KeyReader":
        try:
            fd = self.stream.fileno()
            if os.isatty(fd):
                self.saved = termios.tcgetattr(fd)
                tty.setcbreak(fd)
                self.fd = fd
        except (AttributeError, OSError, ValueError, termios.error):
            self.fd = None
        return self

    def __exit__(self, *exc_info) -> None:
        if self.fd is not None and self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def wait(self, timeout: float) -> str | None:
        """The key pressed within `timeout` seconds, or None."""
        if self.fd is None:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return None
        data = os.read(self.fd, 1)
        if not data:  # end of input: nothing more to read, only wait from now on
            self.fd = None
        return data.decode(errors="ignore") or None


def run_live(
    *,
    console: Console,
    keys: KeyReader,
    interval: float,
    clock: Callable[[], datetime] = timezone.now,
) -> None:
    """Show the dashboard full screen, refreshed every `interval` seconds (or on any other
    key) until `q`. A database error keeps the last frame with the error shown, and the
    next refresh connects again."""
    last: DashboardSnapshot | None = None

    def frame() -> RenderableType:
        nonlocal last
        error = None
        try:
            last = take_snapshot(now=clock())
        except DatabaseError as exc:
            error = f"Cannot read the database ({str(exc).strip() or type(exc).__name__}); showing the last data."
            close_old_connections()  # drops a broken connection: the next refresh connects again
        return render_dashboard(last, full_screen=True, interval=interval, error=error)

    with Live(frame(), console=console, screen=True, auto_refresh=False, transient=True) as live:
        while True:
            key = keys.wait(interval)
            if key and key.lower() == "q":
                return
            live.update(frame(), refresh=True)
