"""Escalation: the policy's timing (pure), the snapshot taken when an alert fires, steps
picked up by the sweep on an injected clock, and acknowledgements that stop them, also
while a step is being sent."""

import threading
from datetime import timedelta

import pytest
from django.db import connection

from alerts.choices import AlertState
from alerts.lifecycle import acknowledge_alert, resolve_alert
from alerts.models import Alert, EscalationPolicy, EscalationStep
from alerts.silencing import create_silence
from monitoring.choices import AuditSource
from notifications import outbox
from notifications.choices import NotificationStatus
from notifications.escalation import PolicySpec, StepSpec, spec_from_snapshot
from notifications.models import Notification
from notifications.services import sweep_escalations

from .helpers import T0, fire
from .servers import Reply

MIN = timedelta(minutes=1)


def spec(*afters: int, repeat: bool = False) -> PolicySpec:
    return PolicySpec("p", "p", repeat, tuple(StepSpec(after, (i,)) for i, after in enumerate(afters)))


@pytest.mark.parametrize(
    ("policy", "position", "due_minutes", "event"),
    [
        (spec(0, 15), 0, 0, "escalation"),
        (spec(0, 15), 1, 15, "escalation"),
        (spec(0, 15), 2, None, None),  # no repeat: done after the last step
        (spec(0, 15, repeat=True), 2, 30, "reminder"),  # a round lasts 15 + the last gap 15
        (spec(0, 15, repeat=True), 3, 45, "reminder"),
        (spec(0, 15, repeat=True), 4, 60, "reminder"),
        (spec(0, 5, 30, repeat=True), 3, 55, "reminder"),  # 0 to 30, then the last gap 25 again
        (spec(0, repeat=True), 1, 5, "reminder"),  # a lone step at 0 repeats every 5 minutes at most
        (spec(10, repeat=True), 1, 20, "reminder"),  # a lone step at 10 repeats every 10 minutes
        (spec(10, repeat=True), 2, 30, "reminder"),
        (spec(5, 10, repeat=True), 2, 15, "reminder"),
    ],
)
def test_step_timing(policy, position, due_minutes, event) -> None:
    offset = policy.due_offset(position)
    assert offset == (timedelta(minutes=due_minutes) if due_minutes is not None else None)
    if event:
        assert policy.event_at(position) == event


def test_steps_due_at_once_go_with_the_firing_notification() -> None:
    assert spec(0, 0, 10).immediate_steps() == 2
    assert spec(5, 10).immediate_steps() == 0


# --- Through the database -----------------------------------------------------------------------------


@pytest.fixture
def world(db, webhook_channel, make_rule, make_policy, receiver):
    """A rule notifying `oncall`; its policy pages `oncall` at once and `pager` after 15 minutes."""
    oncall = webhook_channel("oncall")
    pager = webhook_channel("pager", url=f"{receiver.url}/pager")
    policy = make_policy("critical", steps=[(0, [oncall]), (15, [pager])])
    rule = make_rule(channels=[oncall], policy=policy, severity="critical")
    return {"oncall": oncall, "pager": pager, "policy": policy, "rule": rule}


def rows(**filters) -> list[tuple]:
    return list(
        Notification.objects.filter(**filters)
        .order_by("pk")
        .values_list("channel__key", "event", "escalation_step", "status")
    )


def test_escalation_steps_fall_due_on_the_injected_clock(world, receiver, clock):
    alert = fire(world["rule"], T0)
    assert rows() == [("oncall", "firing", 0, "pending")]  # the step at 0 is the firing message itself
    assert alert.escalation_snapshot["steps"][1] == {"after_minutes": 15, "channels": [world["pager"].pk]}
    assert alert.next_escalation_at == T0 + 15 * MIN

    sweep_escalations(now=T0 + 15 * MIN - timedelta(seconds=1))
    assert len(rows()) == 1
    summary = sweep_escalations(now=T0 + 15 * MIN)
    assert summary.steps_sent == 1
    assert rows(event="escalation") == [("pager", "escalation", 2, "pending")]
    alert.refresh_from_db()
    assert alert.next_escalation_at is None and alert.escalation_step == 2

    clock.current = T0 + 15 * MIN
    outbox.sweep_outbox(clock=clock)
    step = next(r for r in receiver.requests if r.path == "/pager").json()
    assert step["event"] == "escalation" and step["escalation_step"] == 2
    assert step["title"] == "[ESCALATION step 2] High Cpu"
    sweep_escalations(now=T0 + 2 * 60 * MIN)
    assert len(rows()) == 2  # no further steps


def test_a_repeating_policy_reminds_until_acknowledged(world, clock):
    world["policy"].repeat = True
    world["policy"].save()
    alert = fire(world["rule"], T0)
    for minutes in (15, 30, 45):
        sweep_escalations(now=T0 + minutes * MIN)
    assert rows(alert=alert)[1:] == [
        ("pager", "escalation", 2, "pending"),
        ("oncall", "reminder", 3, "pending"),
        ("pager", "reminder", 4, "pending"),
    ]
    acknowledge_alert(alert_id=alert.pk, user=None, source=AuditSource.SYSTEM, now=T0 + 50 * MIN)
    sweep_escalations(now=T0 + 3 * 60 * MIN)
    assert Notification.objects.filter(alert=alert, event="reminder").count() == 2


def test_the_policy_is_copied_when_the_alert_fires(world, make_policy):
    alert = fire(world["rule"], T0)
    step = EscalationStep.objects.get(policy=world["policy"], after_minutes=15)
    step.after_minutes = 120
    step.save()
    step.channels.set([world["oncall"]])
    sweep_escalations(now=T0 + 15 * MIN)
    assert rows(alert=alert, event="escalation") == [("pager", "escalation", 2, "pending")]
    assert spec_from_snapshot(Alert.objects.get(pk=alert.pk).escalation_snapshot).steps[1].after_minutes == 15


def test_policy_of_the_rule_else_the_first_enabled_for_the_severity(db, webhook_channel, make_rule, make_policy):
    hook = webhook_channel()
    make_policy("old-off", steps=[(5, [hook])], severity="high")
    EscalationPolicy.objects.filter(key="old-off").update(enabled=False)
    by_severity = make_policy("sev", steps=[(10, [hook])], severity="high")
    make_policy("sev-later", steps=[(20, [hook])], severity="high")
    own = make_policy("own", steps=[(30, [hook])])
    plain = fire(make_rule("plain", channels=[hook]), T0)
    owned = fire(make_rule("owned", channels=[hook], policy=own), T0)
    low = fire(make_rule("low", channels=[hook], severity="low"), T0)
    assert plain.escalation_snapshot["policy"] == by_severity.key and plain.next_escalation_at == T0 + 10 * MIN
    assert owned.escalation_snapshot["policy"] == "own" and owned.next_escalation_at == T0 + 30 * MIN
    assert low.escalation_snapshot is None and low.next_escalation_at is None


def test_acknowledging_holds_back_queued_steps_and_schedules_no_more(world, receiver, clock):
    alert = fire(world["rule"], T0)
    sweep_escalations(now=T0 + 15 * MIN)
    acknowledge_alert(alert_id=alert.pk, user=None, source=AuditSource.SYSTEM, now=T0 + 16 * MIN)
    step = Notification.objects.get(event="escalation")
    assert step.status == NotificationStatus.SUPPRESSED
    assert step.suppressed_reason == "the alert was acknowledged before this step was sent"
    # The acknowledgement goes to the rule's channel; the pager was never told it fired.
    assert rows(event="acknowledged") == [("oncall", "acknowledged", 2, "pending")]
    clock.current = T0 + 16 * MIN
    outbox.sweep_outbox(clock=clock)
    assert [r.path for r in receiver.requests] == ["/hook", "/hook"]
    assert Alert.objects.get(pk=alert.pk).next_escalation_at is None


def test_an_acknowledgement_after_a_step_was_claimed_stops_it_before_sending(world, receiver, clock):
    alert = fire(world["rule"], T0)
    outbox.sweep_outbox(clock=clock)  # the firing message
    sweep_escalations(now=T0 + 15 * MIN)
    token, claimed = outbox.claim(now=T0 + 15 * MIN, lease_s=60)  # a worker has the step in hand
    assert len(claimed) == 1
    acknowledge_alert(alert_id=alert.pk, user=None, source=AuditSource.SYSTEM, now=T0 + 15 * MIN)
    clock.current = T0 + 15 * MIN
    stats = outbox.deliver_claimed(token, claimed, clock=clock)
    assert stats.suppressed == 1 and stats.sent == 0
    assert not any(r.path == "/pager" for r in receiver.requests)
    step = Notification.objects.get(event="escalation")
    assert step.suppressed_reason == "the alert was acknowledged before this step was sent"


def test_acknowledging_while_a_step_is_being_sent_is_not_blocked_and_stops_the_next(
    shared_db, webhook_channel, make_rule, make_policy, receiver, clock
):
    oncall = webhook_channel("oncall")
    pager = webhook_channel("pager", timeout=30)
    policy = make_policy("critical", steps=[(0, [oncall]), (15, [pager]), (30, [pager])], repeat=True)
    alert = fire(make_rule(channels=[oncall], policy=policy), T0)
    outbox.sweep_outbox(clock=clock)
    sweep_escalations(now=T0 + 15 * MIN)
    clock.current = T0 + 15 * MIN
    receiver.arrived.clear()
    receiver.script.append(Reply(hang=True))
    sending = threading.Thread(target=lambda: (outbox.sweep_outbox(clock=clock), connection.close()))
    sending.start()
    try:
        assert receiver.arrived.wait(timeout=30)
        acknowledge_alert(alert_id=alert.pk, user=None, source=AuditSource.SYSTEM, now=T0 + 15 * MIN)
        assert sending.is_alive()  # the acknowledgement did not wait for the send
    finally:
        receiver.release.set()
        sending.join(timeout=60)
    assert Alert.objects.get(pk=alert.pk).state == AlertState.ACKNOWLEDGED
    sent = len(receiver.requests)
    for minutes in (30, 45, 60, 120):
        sweep_escalations(now=T0 + minutes * MIN)
        clock.current = T0 + minutes * MIN
        outbox.sweep_outbox(clock=clock)
    assert Notification.objects.filter(alert=alert, event__in=["escalation", "reminder"]).count() == 1
    assert [r.path for r in receiver.requests[sent:]] == ["/hook"]  # only the acknowledgement


def test_an_expired_acknowledgement_resumes_escalation(world):
    alert = fire(world["rule"], T0)
    acknowledge_alert(alert_id=alert.pk, user=None, source=AuditSource.SYSTEM, now=T0 + MIN, expires_at=T0 + 30 * MIN)
    sweep_escalations(now=T0 + 20 * MIN)
    assert rows(event="escalation") == []
    sweep_escalations(now=T0 + 30 * MIN)
    alert.refresh_from_db()
    assert alert.state == AlertState.ACTIVE
    assert rows(event="escalation") == [("pager", "escalation", 2, "pending")]


def test_resolving_stops_escalation_and_tells_every_channel_that_was_told(world, clock):
    alert = fire(world["rule"], T0)
    sweep_escalations(now=T0 + 15 * MIN)
    clock.current = T0 + 15 * MIN
    outbox.sweep_outbox(clock=clock)
    resolve_alert(alert_id=alert.pk, user=None, source=AuditSource.SYSTEM, now=T0 + 20 * MIN)
    assert sorted(k for k, *_ in rows(event="resolved")) == ["oncall", "pager"]
    assert Alert.objects.get(pk=alert.pk).next_escalation_at is None


def test_a_silenced_alert_escalates_once_the_silence_ends(world):
    alert = fire(world["rule"], T0)
    create_silence(
        user=None,
        rule_id=world["rule"].pk,
        matchers=[],
        starts_at=T0,
        ends_at=T0 + 20 * MIN,
        source=AuditSource.SYSTEM,
        now=T0 + MIN,
    )
    sweep_escalations(now=T0 + 15 * MIN)
    assert rows(event="escalation") == []
    assert Alert.objects.get(pk=alert.pk).next_escalation_at == T0 + 15 * MIN  # still due, waiting
    sweep_escalations(now=T0 + 20 * MIN)
    assert rows(event="escalation") == [("pager", "escalation", 2, "pending")]
