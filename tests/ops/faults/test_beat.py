"""Two beat processes running together (3 minutes in the PostgreSQL + Redis mode): one leads
and sends, the other stands by, each rule is evaluated once per window and no notification
goes out twice; then the leader is SIGKILLed and the standby sends the due tasks within 60 s."""

import time
from datetime import UTC, datetime

import pytest
from django.conf import settings

from tests.ops.harness import (
    FAST_SETTINGS,
    as_datetime,
    channels_for,
    pagerduty_events,
    wait_for,
    webhook_keys,
)

pytestmark = pytest.mark.fault

# The issue's 3 minutes run where both modes' budget allows it: in the PostgreSQL + Redis
# mode; the embedded mode runs the same scenario for 20 s (docs/decisions.md, "Operations").
DUAL_BEAT_S = 180.0 if settings.IS_POSTGRES else 20.0
LOCK_TTL_S = 10
LOCK_RENEW_S = 2
TAKEOVER_S = 60.0  # the bound; the lock's TTL plus a renewal is 12 s
EVALUATION_JOB = "alerts.tasks.evaluate_rules_task"
LOCK_KEY = "monitoring:beat-leader"
DEVICES = 10
SENDING = "Sending due task"
SKIPPED = "already claimed by another run, skipped"


def evaluation_runs(stack) -> list[tuple[datetime, datetime]]:
    """(window_start, claimed_at) of every evaluation run that did its work."""
    rows = stack.query("SELECT window_start, claimed_at FROM monitoring_periodicrun WHERE job = %s", [EVALUATION_JOB])
    return sorted((as_datetime(start), as_datetime(claimed)) for start, claimed in rows)


def logged_between(text: str, start: datetime, end: datetime) -> list[str]:
    """The log lines stamped within [start, end] (the line format starts with the time, UTC)."""
    lines = []
    for line in text.splitlines():
        try:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
        except ValueError:
            continue  # a traceback's continuation
        if start <= stamp <= end:
            lines.append(line)
    return lines


def leader_pid(stack) -> int | None:
    token = stack.redis.client().get(LOCK_KEY)
    return int(token.decode().split(":")[-2]) if token else None  # the token is host:pid:random


def all_sent(stack, rule: str, count: int) -> bool:
    rows = stack.outbox(rule)
    return len(rows) == count and all(row.status == "sent" for row in rows)


@pytest.mark.timeout(DUAL_BEAT_S + 240)
def test_two_beats_send_each_window_once_and_the_standby_takes_over_a_killed_leader(
    stack, webhook_receiver, pagerduty_receiver
):
    stack.extra_env |= {"MONITORING_BEAT_LOCK_TTL": str(LOCK_TTL_S), "MONITORING_BEAT_LOCK_RENEW": str(LOCK_RENEW_S)}
    stack.run(
        "configure",
        settings=FAST_SETTINGS,
        channels=channels_for(webhook_receiver, pagerduty_receiver),
        rules=[{"key": "temp", "metric": "temp_level", "threshold": 90, "channels": ["hook", "pager"]}],
    )
    stack.worker(concurrency=2)
    beats = {"beat-a": stack.beat("beat-a"), "beat-b": stack.beat("beat-b")}
    leader = wait_for(lambda: leader_pid(stack), timeout=60, what="a beat holding the leader lock")
    assert leader in {child.pid for child in beats.values()}
    standby = next(name for name, child in beats.items() if child.pid != leader)
    leading = next(name for name, child in beats.items() if child.pid == leader)

    # Alerts fire in the first half of the two-beat period and resolve in the second.
    started = datetime.now(UTC)
    stack.run("ingest", metric="temp_level", first=0, count=DEVICES, value=99.0)
    time.sleep(DUAL_BEAT_S / 2)  # the two beats run side by side; the checks follow
    stack.run("ingest", metric="temp_level", first=0, count=DEVICES, value=20.0)
    time.sleep(DUAL_BEAT_S / 2)
    ended = datetime.now(UTC)
    assert all(child.alive() for child in beats.values()), stack.tail()

    # One beat sent, the other stood by; no window's evaluation ran twice.
    assert beats[standby].log.read_text().count(SENDING) == 0
    assert beats[leading].log.read_text().count(SENDING) > 0
    windows = [start for start, claimed in evaluation_runs(stack) if started <= claimed <= ended]
    assert len(windows) == len(set(windows))
    # The leader's scheduler may now and then send a run again within its window (it re-reads
    # its rows when they change); the window's claim turns that into a skip of a window that
    # ran once, which is the guarantee: never a window evaluated twice.
    skipped = [line for line in logged_between(stack.log_text(), started, ended) if SKIPPED in line]
    ran = {start.isoformat() for start, _ in evaluation_runs(stack)}
    for line in skipped:
        if EVALUATION_JOB in line:
            assert line.split(" window ")[1].split(" ")[0] in ran, line
    assert len(skipped) <= len(windows) // 10, skipped  # a rare repeat, not a second sender
    # Evaluation kept its pace: about one run per one-second window, never more.
    elapsed = (ended - started).total_seconds()
    # (a period of `elapsed` seconds touches up to elapsed + 2 one-second windows: a part of one at each end)
    assert elapsed / 3 <= len(windows) <= elapsed + 2
    # Each alert fired and resolved once on each channel.
    wait_for(lambda: all_sent(stack, "temp", 4 * DEVICES), timeout=60, what="firing and resolved sent")
    rows = stack.outbox("temp")
    assert sorted({(row.channel, row.event) for row in rows}) == [
        ("hook", "firing"),
        ("hook", "resolved"),
        ("pager", "firing"),
        ("pager", "resolved"),
    ]
    hooks = webhook_keys(webhook_receiver.snapshot())
    assert [hooks[row.key] for row in rows if row.channel == "hook"] == [1] * 2 * DEVICES
    pages = pagerduty_events(pagerduty_receiver.snapshot())
    alert_ids = {row.alert_id for row in rows}
    assert {(str(a), action) for a in alert_ids for action in ("trigger", "resolve")} <= set(pages)
    assert max(pages.values()) == 1 and max(hooks.values()) == 1

    # The leader dies without releasing its lock: the standby takes over within 60 s.
    stack.kill(leading)
    killed = datetime.now(UTC)
    stack.run("ingest", metric="temp_level", first=0, count=DEVICES, value=98.0)

    def run_after_kill() -> bool:
        return any(claimed > killed for _, claimed in evaluation_runs(stack))

    wait_for(run_after_kill, timeout=TAKEOVER_S, what="an evaluation sent by the standby", describe=stack.tail)
    assert leader_pid(stack) == beats[standby].pid
    assert beats[standby].log.read_text().count(SENDING) > 0
    # The alerts that fire again are notified, once, by what the new leader drives.
    wait_for(lambda: all_sent(stack, "temp", 6 * DEVICES), timeout=120, what="the new firing notifications sent")
    hooks = webhook_keys(webhook_receiver.snapshot())
    assert sum(hooks[row.key] for row in stack.outbox("temp") if row.channel == "hook") == 3 * DEVICES
    assert max(hooks.values()) == 1
