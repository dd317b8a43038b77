"""Redis stopped for 30 s in the middle of an alert storm: 200 alerts firing on a webhook and
a PagerDuty channel; after Redis is back every notification has been delivered, none lost,
none twice."""

import time

import pytest

from tests.ops.harness import FAST_SETTINGS, channels_for, pagerduty_events, wait_for, webhook_keys

pytestmark = pytest.mark.fault

STORM = 200
BEFORE_OUTAGE = 100  # alerts that fire before Redis stops; the rest fire while it is down
OUTAGE_S = 30.0  # the figure, kept literal


def test_redis_stopped_for_30s_during_a_storm_loses_and_repeats_no_notification(
    stack, webhook_receiver, pagerduty_receiver
):
    stack.run(
        "configure",
        settings=FAST_SETTINGS,
        channels=channels_for(webhook_receiver, pagerduty_receiver),
        rules=[{"key": "storm", "metric": "storm_level", "threshold": 90, "channels": ["hook", "pager"]}],
    )
    # Slow receivers keep the first wave on the wire while Redis goes away.
    webhook_receiver.delay = pagerduty_receiver.delay = 0.05
    stack.worker(concurrency=2)
    stack.beat()

    def arrived() -> int:
        return len(webhook_receiver.snapshot()) + len(pagerduty_receiver.snapshot())

    stack.run("ingest", metric="storm_level", first=0, count=BEFORE_OUTAGE, value=95.0)
    wait_for(lambda: arrived() >= 40, timeout=120, what="the first wave on its way", describe=stack.tail)

    stack.redis.stop()
    stopped = time.monotonic()
    assert not stack.redis.answering()
    # The rest of the storm fires while Redis is down: the samples are stored, and an
    # evaluator (here a process of its own) writes the transitions and their outbox rows;
    # handing them to a worker fails at commit.
    assert stack.run("ingest", metric="storm_level", first=BEFORE_OUTAGE, count=STORM - BEFORE_OUTAGE, value=97.0)
    stack.run("evaluate")
    firing = "SELECT count(*) FROM alerts_alert a JOIN alerts_alertrule r ON r.id = a.rule_id"
    assert stack.query(firing + " WHERE a.state = 'active' AND r.key = 'storm'") == [(STORM,)]
    assert len(stack.outbox('storm')) == 2 * STORM  # every row is written before Redis is back
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))  # the outage's length, not an assertion
    stack.redis.start()

    def all_sent() -> bool:
        rows = stack.outbox("storm")
        return len(rows) == 2 * STORM and all(row.status == "sent" for row in rows)

    wait_for(
        all_sent,
        timeout=240,
        every=1.0,
        what="all 400 notifications of the storm sent after Redis came back",
        describe=lambda: f"storm outbox statuses: {sorted({r.status for r in stack.outbox('storm')})}\n{stack.tail()}",
    )

    # What arrived first, then the rows: every request seen has its row in what is read.
    hooks = webhook_keys(webhook_receiver.snapshot())
    pages = pagerduty_events(pagerduty_receiver.snapshot())
    rows = stack.outbox()
    hook_rows = [row for row in rows if row.channel == "hook" and row.rule == "storm"]
    pager_rows = [row for row in rows if row.channel == "pager" and row.rule == "storm"]
    assert len(hook_rows) == len(pager_rows) == STORM
    assert {row.event for row in hook_rows + pager_rows} == {"firing"}

    assert [hooks[row.key] for row in hook_rows] == [1] * STORM  # each delivered, once
    assert [pages[(str(row.alert_id), "trigger")] for row in pager_rows] == [1] * STORM
    # Nothing arrived twice, whatever the rule, and nothing arrived that has no row.
    assert max(hooks.values()) == 1 and max(pages.values()) == 1
    assert set(hooks) <= {row.key for row in rows if row.channel == "hook"}
    # The outage was felt: rows written while it lasted could not be handed to a worker.
    assert "not handed to a worker" in stack.log_text()
