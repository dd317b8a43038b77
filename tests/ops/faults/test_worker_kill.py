"""A worker SIGKILLed (with its pool) while it holds 50 notifications in flight: once their
lease expires, another worker delivers every one of them; only the request that was on the
wire when the worker died arrives a second time, under the same Idempotency-Key."""

import pytest

from tests.ops.harness import FAST_SETTINGS, wait_for, webhook_keys

pytestmark = pytest.mark.fault

IN_FLIGHT = 50
SEND_TIMEOUT = 6  # the channel's timeout: the lease is this plus the outbox's margin
RECEIVER_DELAY = 4.0  # the receiver holds each request this long before answering


def test_notifications_of_a_killed_worker_are_delivered_by_another_after_the_lease(stack, webhook_receiver):
    stack.run(
        "configure",
        settings=FAST_SETTINGS,
        channels=[{"key": "hook", "kind": "webhook", "url": f"{webhook_receiver.url}/hook", "timeout": SEND_TIMEOUT}],
        rules=[{"key": "hot", "metric": "hot_level", "threshold": 90, "channels": ["hook"]}],
    )
    webhook_receiver.delay = RECEIVER_DELAY
    stack.worker("victim", concurrency=2)
    stack.beat()
    stack.run("ingest", metric="hot_level", first=0, count=IN_FLIGHT, value=99.0)

    def in_flight() -> bool:
        rows = stack.outbox("hot")
        sending = len(rows) == IN_FLIGHT and all(row.status == "sending" for row in rows)
        return sending and len(webhook_receiver.snapshot()) >= 1

    # All 50 claimed by the victim's delivery, the first of them on the wire.
    wait_for(in_flight, timeout=120, every=0.1, what="50 notifications in flight", describe=stack.tail)
    stack.kill("victim")
    webhook_receiver.delay = 0.0

    at_kill = {row.key: row for row in stack.outbox("hot")}
    before = webhook_receiver.snapshot()
    hot_keys = set(at_kill)
    seen_before = {r.headers["idempotency-key"] for r in before if r.headers.get("idempotency-key") in hot_keys}
    unanswered = {key for key in seen_before if at_kill[key].status != "sent"}  # on the wire at death
    assert unanswered  # the first request was held by the receiver when the worker died
    still_claimed = [row for row in at_kill.values() if row.status == "sending"]
    assert len(still_claimed) >= IN_FLIGHT - len(seen_before)
    lease_end = min(row.lease_expires_at for row in still_claimed)

    stack.worker("replacement", concurrency=2)
    wait_for(
        lambda: all(row.status == "sent" for row in stack.outbox("hot")),
        timeout=180,
        every=0.5,
        what="every notification of the killed worker sent by the replacement",
        describe=lambda: f"{sorted((r.status, r.attempts) for r in stack.outbox('hot'))}\n{stack.tail()}",
    )

    after = webhook_receiver.snapshot()
    rows = stack.outbox("hot")
    keys = webhook_keys(after)
    assert {row.key for row in rows} <= set(keys)  # every notification arrived
    duplicates = {key: n for key, n in keys.items() if n > 1}
    # The at-least-once edge: only a request whose answer the dead worker never read comes again.
    assert set(duplicates) <= unanswered and all(n == 2 for n in duplicates.values())
    assert sum(keys[row.key] for row in rows) == IN_FLIGHT + len(duplicates)
    # Nothing was taken from the dead worker before its lease ran out.
    resent = [r for r in after[len(before) :] if r.headers.get("idempotency-key") in hot_keys]
    assert len(resent) == len(still_claimed)
    assert min(r.at for r in resent) >= lease_end.timestamp()
    # A send started counts as an attempt: the row on the wire at death shows two.
    assert sorted(row.attempts for row in rows if row.key in unanswered) == [2] * len(unanswered)
