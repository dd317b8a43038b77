"""Rate limits and grouping: the pure plan, the token bucket and Retry-After pauses in
Redis, and a storm of a thousand alerts to Slack."""

import re
from collections import Counter
from datetime import timedelta

import pytest

from alerts.evaluation import evaluate_rules
from alerts.models import Alert
from monitoring.ingest import SampleIn, ingest_samples
from notifications import outbox
from notifications.choices import NotificationStatus
from notifications.models import Notification
from notifications.ratelimit import (
    Limit,
    block_channel,
    blocked_until,
    give_back,
    limit_for,
    plan_messages,
    take_tokens,
)

from .helpers import T0, fire
from .servers import Reply


@pytest.mark.parametrize(
    ("events", "tokens", "can_group", "messages", "held"),
    [
        # A token each: each alone.
        (["firing"] * 3, 3, True, [(0,), (1,), (2,)], []),
        # No token: everything waits.
        (["firing"] * 3, 0, True, [], [0, 1, 2]),
        # Fewer tokens than notifications: one message for all of one event.
        (["firing"] * 5, 1, True, [(0, 1, 2, 3, 4)], []),
        # Groups never mix events; what does not fit waits.
        (["firing", "resolved", "firing", "resolved"], 1, True, [(0, 2)], [1, 3]),
        (["firing", "resolved", "firing", "resolved"], 2, True, [(0, 2), (1, 3)], []),
        # A group holds at most max_group (here 2).
        (["firing"] * 5, 2, True, [(0, 1), (2, 3)], [4]),
        # A channel that cannot group (PagerDuty) sends what its tokens pay for.
        (["firing"] * 3, 1, False, [(0,)], [1, 2]),
    ],
)
def test_plan_groups_rather_than_drops(events, tokens, can_group, messages, held) -> None:
    max_group = 2 if len(events) == 5 and tokens == 2 else 50
    plan = plan_messages(events, tokens, can_group=can_group, max_group=max_group)
    assert [list(m) for m in plan.messages] == [list(m) for m in messages]
    assert list(plan.held) == held
    # Nothing is dropped: every notification is in a message or waits.
    assert sorted([i for m in plan.messages for i in m] + list(plan.held)) == list(range(len(events)))


def test_default_limits_per_kind() -> None:
    assert limit_for("slack", None) == Limit(60)
    assert limit_for("pagerduty", None) == Limit(120)
    assert limit_for("email", None) is None
    assert limit_for("email", 30) == Limit(30)
    assert Limit(60).capacity == 6 and Limit(5).capacity == 1


def test_token_bucket_refills_at_its_rate() -> None:
    now = T0.timestamp()
    first = take_tokens(101, Limit(60), 10, now)
    assert first.granted == 6 and first.wait_s == pytest.approx(1.0)
    assert take_tokens(101, Limit(60), 1, now + 0.5).granted == 0
    assert take_tokens(101, Limit(60), 5, now + 2.0).granted == 2
    give_back(101, Limit(60), 1)
    assert take_tokens(101, Limit(60), 5, now + 2.0).granted == 1
    assert take_tokens(102, None, 500, now).granted == 500  # no limit


def test_retry_after_pause_is_shared_and_only_ever_extended() -> None:
    now = T0.timestamp()
    block_channel(7, now + 30, now)
    block_channel(7, now + 10, now)
    assert blocked_until(7, now + 29) == now + 30
    assert blocked_until(7, now + 30) is None
    assert blocked_until(8, now) is None


@pytest.mark.django_db
def test_pagerduty_over_its_limit_sends_what_it_may_and_keeps_the_rest(make_channel, make_rule, receiver, clock):
    receiver.default = Reply(202, {"status": "success"})
    pd = make_channel(
        "pagerduty", integration_key="K", events_url=f"{receiver.url}/v2/enqueue", rate_limit_per_minute=6
    )
    rule = make_rule(channels=[pd])
    for i in range(3):
        fire(rule, T0, {"host": f"h{i}"})
    outbox.sweep_outbox(clock=clock, budget_s=5)
    assert len(receiver.requests) == 1  # one token now, the next in ten seconds
    assert Counter(Notification.objects.values_list("status", flat=True)) == {"sent": 1, "pending": 2}
    for _ in range(2):  # sweeps every ten seconds
        clock.advance(10)
        outbox.sweep_outbox(clock=clock)
    assert Counter(Notification.objects.values_list("status", flat=True)) == {"sent": 3}
    times = [r.at for r in receiver.requests]
    assert all(later - earlier >= timedelta(seconds=10) for earlier, later in zip(times, times[1:], strict=False))
    assert {r.json()["dedup_key"] for r in receiver.requests} == {str(a.pk) for a in Alert.objects.all()}


@pytest.mark.django_db
def test_a_storm_of_1000_alerts_to_slack_respects_retry_after_and_loses_none(make_channel, make_rule, receiver, clock):
    slack = make_channel("slack", webhook_url=f"{receiver.url}/services/T/B/X", timeout=2)
    make_rule("hot", channels=[slack], duration=0)
    receiver.script.append(Reply(429, "rate_limited", {"Retry-After": "30"}))
    ingest_samples(
        [SampleIn("cpu_usage_percent", {"host": f"h{i}"}, 99.0, T0.timestamp()) for i in range(1000)], now=T0
    )
    evaluate_rules(now=T0)
    assert Notification.objects.filter(status=NotificationStatus.PENDING).count() == 1000

    outbox.sweep_outbox(clock=clock)
    assert len(receiver.requests) == 1 and receiver.requests[0].status == 429
    for seconds in (10, 20, 29):
        clock.current = T0 + timedelta(seconds=seconds)
        outbox.sweep_outbox(clock=clock, budget_s=0.5)
    assert len(receiver.requests) == 1  # nothing before the Retry-After has passed

    clock.current = T0 + timedelta(seconds=30)
    for _ in range(5):
        if not Notification.objects.exclude(status=NotificationStatus.SENT).exists():
            break
        outbox.sweep_outbox(clock=clock)
    assert Counter(Notification.objects.values_list("status", flat=True)) == {"sent": 1000}

    later = receiver.requests[1:]
    assert all(r.at >= T0 + timedelta(seconds=30) for r in later)
    # The bucket: a burst of six, then one message a second.
    for r in later:
        elapsed = (r.at - (T0 + timedelta(seconds=30))).total_seconds()
        assert sum(1 for other in later if other.at <= r.at) <= 6 + elapsed
    # Every alert is in exactly one delivered message; the grouped ones say what follows.
    seen = Counter()
    for r in receiver.answered(200):
        body = r.json()
        text = "\n".join(b["text"]["text"] for b in body["attachments"][0]["blocks"] if b["type"] == "section")
        seen.update(re.findall(r"`host=(h\d+)", text))
    assert seen == Counter({f"h{i}": 1 for i in range(1000)})
    assert len(receiver.answered(200)) == 20  # 50 alerts a message
    texts = [r.json()["text"] for r in receiver.answered(200)]
    assert set(texts) == {"50 alerts firing"}
    first_body = receiver.answered(200)[0].json()["attachments"][0]["blocks"]
    assert "+950 more, in the next messages." in "\n".join(b["text"]["text"] for b in first_body if "text" in b)
