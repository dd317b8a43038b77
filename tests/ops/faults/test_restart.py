"""Web, worker and beat all restarted while firing alerts are between escalation steps: no
"firing" notification goes out again, and the next step is sent when it falls due (one
minute after the alert fired), to the step's channel, once."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.ops.harness import (
    FAST_SETTINGS,
    as_datetime,
    channels_for,
    free_port,
    pagerduty_events,
    wait_for,
    webhook_keys,
)

pytestmark = pytest.mark.fault

DEVICES = 5
STEP_AFTER = timedelta(minutes=1)  # the policy's second step; steps are whole minutes
LATE_AT_MOST = timedelta(seconds=30)  # sweeps run every second; a generous margin for a loaded machine


def push(port: int, key: str, value: float) -> None:
    samples = [{"metric": "disk_level", "labels": {"device": f"d-{n:04d}"}, "value": value} for n in range(DEVICES)]
    response = httpx.post(
        f"http://127.0.0.1:{port}/api/metrics", json={"samples": samples}, headers={"X-API-Key": key}, timeout=30
    )
    assert response.status_code == 200, response.text


def alerts(stack) -> list[tuple]:
    """(id, state, fired_at, escalation_step, next_escalation_at) of the rule's alerts."""
    rows = stack.query(
        "SELECT a.id, a.state, a.fired_at, a.escalation_step, a.next_escalation_at FROM alerts_alert a"
        " JOIN alerts_alertrule r ON r.id = a.rule_id WHERE r.key = 'disk' ORDER BY a.id"
    )
    return [(i, state, as_datetime(fired), step, as_datetime(due)) for i, state, fired, step, due in rows]


def start_all(stack, port: int) -> None:
    stack.web(port)
    stack.worker(concurrency=2)
    stack.beat()
    wait_for(lambda: answers(port), timeout=60, what="the web server answering", describe=stack.tail)


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_a_full_restart_mid_escalation_repeats_no_firing_and_sends_the_next_step_on_time(
    stack, webhook_receiver, pagerduty_receiver
):
    stack.run(
        "configure",
        settings=FAST_SETTINGS,
        channels=channels_for(webhook_receiver, pagerduty_receiver),
        policies=[{"key": "page", "steps": [[0, ["hook"]], [1, ["pager"]]]}],
        rules=[{"key": "disk", "metric": "disk_level", "threshold": 90, "channels": ["hook"], "policy": "page"}],
    )
    api_key = stack.run("api_key")
    port = free_port()
    start_all(stack, port)

    push(port, api_key, 99.0)
    wait_for(
        lambda: len([r for r in stack.outbox("disk") if r.status == "sent"]) == DEVICES,
        timeout=90,
        what="the firing notifications sent",
        describe=stack.tail,
    )
    fired = alerts(stack)
    assert len(fired) == DEVICES and {a[1] for a in fired} == {"active"}

    # Restart everything between the first step (sent with the firing) and the second.
    for name in ("web", "worker", "beat"):
        stack.terminate(name)
    restarted_at = datetime.now(UTC)
    assert [a[3] for a in alerts(stack)] == [1] * DEVICES  # mid-escalation: one step taken
    assert all(a[4] == a[2] + STEP_AFTER and a[4] > restarted_at for a in alerts(stack))
    start_all(stack, port)
    push(port, api_key, 99.5)  # still firing: evaluated on ingest and by beat, nothing new

    wait_for(
        lambda: len([r for r in stack.outbox("disk") if r.event == "escalation" and r.status == "sent"]) == DEVICES,
        timeout=150,
        every=1.0,
        what="the second escalation step sent after the restart",
        describe=stack.tail,
    )

    rows = stack.outbox("disk")
    by_alert = {a[0]: a for a in alerts(stack)}
    firing = [row for row in rows if row.event == "firing"]
    steps = [row for row in rows if row.event == "escalation"]
    assert sorted(row.alert_id for row in firing) == sorted(by_alert)  # one firing per alert
    assert {row.channel for row in firing} == {"hook"} and {row.channel for row in steps} == {"pager"}
    assert sorted(row.alert_id for row in steps) == sorted(by_alert) and {row.step for row in steps} == {2}
    for row in steps:  # due one minute after the alert fired: not before, not much after
        due = by_alert[row.alert_id][2] + STEP_AFTER
        assert due <= row.created_at <= due + LATE_AT_MOST
    assert all(a[3] == 2 and a[4] is None for a in by_alert.values())  # the policy's last step taken

    # At the receivers (other rules, the watchdog's, may have sent their own meanwhile):
    # each firing once, each step once, nothing twice.
    hooks = webhook_keys(webhook_receiver.snapshot())
    assert [hooks[row.key] for row in firing] == [1] * DEVICES and max(hooks.values()) == 1
    pages = pagerduty_events(pagerduty_receiver.snapshot())
    ours = {event: n for event, n in pages.items() if int(event[0]) in by_alert}
    assert ours == {(str(alert_id), "trigger"): 1 for alert_id in by_alert}
    assert max(pages.values()) == 1
