from datetime import UTC, datetime, time, timedelta

import pytest

from alerts.choices import AlertState, ScheduleKind
from alerts.models import Alert, AlertRule, MaintenanceWindow, Silence
from alerts.silencing import (
    AlertFacts,
    SilenceError,
    SilenceSpec,
    WindowSpec,
    active_windows,
    apply_dependency_suppression,
    create_silence,
    current_silences,
    decide_suppression,
    expire_silence,
    parse_matchers,
    refresh_silenced,
    silence_rule,
    validate_schedule,
)
from monitoring.choices import AuditAction, AuditSource
from monitoring.models import AuditLogEntry, MonitoringTarget

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)  # a Monday


def facts(labels=None, rule_id=1, target=None, firing=True, id=1, **extra) -> AlertFacts:
    return AlertFacts(id=id, rule_id=rule_id, labels=labels or {}, target=target, firing=firing, **extra)


def silence(matchers, rule_id=None, starts=NOW - timedelta(hours=1), ends=NOW + timedelta(hours=1)) -> SilenceSpec:
    return SilenceSpec(id=1, rule_id=rule_id, matchers=parse_matchers(matchers), starts_at=starts, ends_at=ends)


# --- Matchers (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "labels", "expected"),
    [
        ("=", "prod", {"env": "prod"}, True),
        ("=", "prod", {"env": "production"}, False),
        ("=", "", {}, True),  # a missing label is the empty string
        ("!=", "prod", {"env": "dev"}, True),
        ("!=", "prod", {"env": "prod"}, False),
        ("!=", "prod", {}, True),
        ("=~", "pro.", {"env": "prod"}, True),
        ("=~", "pro", {"env": "prod"}, False),  # anchored at the end
        ("=~", "rod", {"env": "prod"}, False),  # anchored at the start
        ("=~", "dev|prod", {"env": "prod"}, True),  # the whole alternation is anchored
        ("=~", "dev|pro", {"env": "prod"}, False),
        ("=~", ".*", {}, True),
        ("!~", "pro.", {"env": "prod"}, False),
        ("!~", "pro", {"env": "prod"}, True),
        ("!~", "dev|staging", {"env": "prod"}, True),
    ],
)
def test_matcher_operators_and_regex_anchoring(op, value, labels, expected):
    spec = silence([{"name": "env", "op": op, "value": value}])
    assert spec.matches(facts(labels), NOW) is expected


def test_all_matchers_of_a_silence_must_match():
    spec = silence([{"name": "env", "op": "=", "value": "prod"}, {"name": "host", "op": "=~", "value": "gw-.*"}])
    assert spec.matches(facts({"env": "prod", "host": "gw-1"}), NOW)
    assert not spec.matches(facts({"env": "prod", "host": "db-1"}), NOW)


def test_matchers_see_alertname_and_severity():
    spec = silence([{"name": "alertname", "op": "=", "value": "cpu"}, {"name": "severity", "op": "!=", "value": "low"}])
    assert spec.matches(facts(rule_key="cpu", severity="high"), NOW)
    assert not spec.matches(facts(rule_key="cpu", severity="low"), NOW)
    assert not spec.matches(facts(rule_key="disk", severity="high"), NOW)


def test_silence_by_rule_matches_only_that_rule_and_only_while_running():
    spec = silence([], rule_id=7)
    assert spec.matches(facts(rule_id=7), NOW)
    assert not spec.matches(facts(rule_id=8), NOW)
    assert not spec.matches(facts(rule_id=7), NOW + timedelta(hours=1))  # ends_at is exclusive
    assert not spec.matches(facts(rule_id=7), NOW - timedelta(hours=2))  # not started yet


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"name": "env", "op": "=~", "value": "(unclosed"}], "Invalid regular expression"),
        ([{"name": "env", "op": "~=", "value": "x"}], "Unknown matcher operator"),
        ([{"name": "", "op": "=", "value": "x"}], "needs a label name"),
        ([{"name": "env", "op": "=", "value": 3}], "must be a string"),
        ({"env": "prod"}, "are a list"),
    ],
)
def test_invalid_matchers_are_refused(raw, message):
    with pytest.raises(SilenceError, match=message):
        parse_matchers(raw)


# --- Maintenance windows (pure) -----------------------------------------------------------------


def weekly(weekdays, start, minutes, tz="UTC", **extra) -> WindowSpec:
    return WindowSpec(
        id=1,
        name="w",
        kind=ScheduleKind.WEEKLY,
        time_zone=tz,
        duration=timedelta(minutes=minutes),
        weekdays=frozenset(weekdays),
        start_time=start,
        **extra,
    )


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2025, 3, 7, 21, 59, tzinfo=UTC), False),  # Friday before it starts
        (datetime(2025, 3, 7, 22, 0, tzinfo=UTC), True),  # Friday 22:00: starts
        (datetime(2025, 3, 8, 1, 59, tzinfo=UTC), True),  # Saturday, across midnight
        (datetime(2025, 3, 8, 2, 0, tzinfo=UTC), False),  # four hours later: over
        (datetime(2025, 3, 8, 22, 30, tzinfo=UTC), False),  # Saturday is not a window day
    ],
)
def test_weekly_window_across_midnight(at, expected):
    window = weekly({4}, time(22, 0), 240)
    assert window.is_active(at) is expected


def test_window_running_for_days_is_found_from_its_start():
    window = weekly({5}, time(0, 0), 3 * 24 * 60)  # Saturday 00:00 for three days
    assert window.is_active(datetime(2025, 3, 10, 23, 59, tzinfo=UTC))  # Monday night
    assert not window.is_active(datetime(2025, 3, 11, 0, 0, tzinfo=UTC))


def test_weekly_window_keeps_local_wall_clock_across_dst():
    # Sundays 01:00 in Berlin for 3 hours. On 30 March 2025 clocks jump 02:00 -> 03:00.
    window = weekly({6}, time(1, 0), 180, tz="Europe/Berlin")
    # Winter (UTC+1): 01:00 local is 00:00 UTC.
    assert window.is_active(datetime(2025, 3, 23, 0, 0, tzinfo=UTC))
    assert not window.is_active(datetime(2025, 3, 22, 23, 59, tzinfo=UTC))
    # DST day: still starts at 01:00 local (00:00 UTC) and lasts 3 elapsed hours.
    assert window.is_active(datetime(2025, 3, 30, 0, 0, tzinfo=UTC))
    assert window.is_active(datetime(2025, 3, 30, 2, 59, tzinfo=UTC))
    assert not window.is_active(datetime(2025, 3, 30, 3, 0, tzinfo=UTC))
    # Summer (UTC+2): 01:00 local is 23:00 UTC on Saturday.
    assert window.is_active(datetime(2025, 4, 5, 23, 0, tzinfo=UTC))
    assert not window.is_active(datetime(2025, 4, 5, 22, 59, tzinfo=UTC))


def test_cron_window_in_a_time_zone():
    # 02:00 New York time on weekdays, 30 minutes.
    window = WindowSpec(
        id=1,
        name="nightly",
        kind=ScheduleKind.CRON,
        time_zone="America/New_York",
        duration=timedelta(minutes=30),
        cron="0 2 * * 1-5",
    )
    # Monday 10 March 2025 is after the US DST change: 02:00 EDT is 06:00 UTC.
    assert window.is_active(datetime(2025, 3, 10, 6, 0, tzinfo=UTC))
    assert window.is_active(datetime(2025, 3, 10, 6, 29, tzinfo=UTC))
    assert not window.is_active(datetime(2025, 3, 10, 6, 30, tzinfo=UTC))
    assert not window.is_active(datetime(2025, 3, 10, 5, 59, tzinfo=UTC))
    # Monday 3 March (EST): 02:00 local is 07:00 UTC.
    assert window.is_active(datetime(2025, 3, 3, 7, 10, tzinfo=UTC))
    assert not window.is_active(datetime(2025, 3, 3, 6, 10, tzinfo=UTC))
    # Sunday: not in 1-5.
    assert not window.is_active(datetime(2025, 3, 9, 6, 10, tzinfo=UTC))


def test_window_applies_to_its_targets_and_matchers():
    by_target = weekly({0}, time(11, 0), 120, targets=frozenset({"gateway-1"}))
    assert by_target.matches(facts(target="gateway-1"), NOW)
    assert not by_target.matches(facts(target="gateway-2"), NOW)
    by_labels = weekly({0}, time(11, 0), 120, matchers=parse_matchers([{"name": "env", "op": "=", "value": "lab"}]))
    assert by_labels.matches(facts({"env": "lab"}), NOW)
    assert not by_labels.matches(facts({"env": "prod"}), NOW)
    assert not weekly({0}, time(11, 0), 120).matches(facts(target="gateway-1"), NOW)  # covers nothing


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"kind": "cron", "cron": "61 * * * *"}, "cron"),
        ({"kind": "cron", "cron": ""}, "cron"),
        ({"kind": "weekly", "weekdays": [7]}, "weekdays"),
        ({"kind": "weekly", "weekdays": []}, "weekdays"),
        ({"kind": "weekly", "start_time": None}, "start_time"),
        ({"kind": "weekly", "time_zone": "Mars/Olympus"}, "time_zone"),
        ({"kind": "weekly", "duration_minutes": 0}, "duration_minutes"),
    ],
)
def test_invalid_schedules_are_refused(schedule, field):
    args = {
        "kind": "weekly",
        "weekdays": [0],
        "start_time": time(1, 0),
        "cron": "",
        "time_zone": "UTC",
        "duration_minutes": 60,
    }
    with pytest.raises(SilenceError) as refused:
        validate_schedule(**{**args, **schedule})
    assert refused.value.field == field


# --- Dependencies (pure) ------------------------------------------------------------------------


def test_children_are_suppressed_by_the_nearest_firing_ancestor():
    parents = {"sensor-1": "gateway", "sensor-2": "gateway", "gateway": "uplink", "other": None}
    alerts = [
        facts(id=10, target="gateway"),
        facts(id=11, target="sensor-1"),
        facts(id=12, target="sensor-2", firing=False),  # pending alerts are suppressed too
        facts(id=13, target="other"),
        facts(id=14, target=None),
        facts(id=9, target="gateway"),  # the oldest firing alert of the parent wins
    ]
    assert decide_suppression(alerts, parents) == {10: None, 11: 9, 12: 9, 13: None, 14: None, 9: None}


def test_grandparent_suppresses_when_parent_is_quiet_and_cycles_end():
    parents = {"sensor": "gateway", "gateway": "uplink", "a": "b", "b": "a"}
    alerts = [facts(id=1, target="uplink"), facts(id=2, target="sensor"), facts(id=3, target="a")]
    assert decide_suppression(alerts, parents) == {1: None, 2: 1, 3: None}


def test_pending_parent_alert_suppresses_nothing():
    decision = decide_suppression([facts(id=1, target="gw", firing=False), facts(id=2, target="s")], {"s": "gw"})
    assert decision == {1: None, 2: None}


# --- Services (database) ------------------------------------------------------------------------


def make_rule(key: str = "cpu") -> AlertRule:
    return AlertRule.objects.create(key=key, name=key, metric="m", comparison=">", threshold=1)


def make_alert(rule, fingerprint, labels=None, state=AlertState.ACTIVE, target=None) -> Alert:
    return Alert.objects.create(
        rule=rule, fingerprint=fingerprint, labels=labels or {}, severity="high", state=state, target=target
    )


@pytest.mark.django_db
def test_silence_rule_silences_its_open_alerts_and_audits(users):
    rule, other = make_rule("cpu"), make_rule("disk")
    alert = make_alert(rule, "a")
    untouched = make_alert(other, "b")

    created = silence_rule(
        rule_id=rule.pk, duration_hours=2, user=users["operator"], comment="", source=AuditSource.CLI, now=NOW
    )

    assert (created.rule, created.starts_at, created.ends_at) == (rule, NOW, NOW + timedelta(hours=2))
    assert created.created_by == users["operator"]
    alert.refresh_from_db()
    untouched.refresh_from_db()
    assert alert.silenced is True
    assert untouched.silenced is False
    entry = AuditLogEntry.objects.get(object_type="alerts.silence")
    assert (entry.action, entry.source, entry.actor) == (AuditAction.SILENCE, AuditSource.CLI, users["operator"])


@pytest.mark.django_db
@pytest.mark.parametrize("hours", [0, -1, 24 * 366, float("nan"), "2"])
def test_silence_rule_refuses_bad_durations(users, hours):
    rule = make_rule()
    with pytest.raises(SilenceError) as refused:
        silence_rule(rule_id=rule.pk, duration_hours=hours, user=users["operator"], source=AuditSource.API, now=NOW)
    assert refused.value.field == "duration_hours"
    assert not Silence.objects.exists()


@pytest.mark.django_db
def test_silence_by_matchers_refuses_invalid_regex_at_creation(users):
    with pytest.raises(SilenceError, match="Invalid regular expression"):
        create_silence(
            user=users["operator"],
            matchers=[{"name": "host", "op": "=~", "value": "gw-[0-9"}],
            ends_at=NOW + timedelta(hours=1),
            source=AuditSource.API,
            now=NOW,
        )
    assert not Silence.objects.exists()


@pytest.mark.django_db
def test_refresh_silenced_reports_alerts_released_when_a_silence_ends(users):
    rule = make_rule()
    firing = make_alert(rule, "a", {"env": "lab"})
    pending = make_alert(rule, "b", {"env": "lab"}, state=AlertState.PENDING)
    prod = make_alert(rule, "c", {"env": "prod"})
    create_silence(
        user=users["operator"],
        matchers=[{"name": "env", "op": "=", "value": "lab"}],
        ends_at=NOW + timedelta(hours=1),
        source=AuditSource.API,
        now=NOW,
    )
    assert set(Alert.objects.filter(silenced=True).values_list("pk", flat=True)) == {firing.pk, pending.pk}

    assert refresh_silenced(NOW + timedelta(minutes=30)) == []
    released = refresh_silenced(NOW + timedelta(hours=1))

    assert [a.pk for a in released] == [firing.pk]  # only firing alerts need a notification now
    assert not Alert.objects.filter(silenced=True).exists()
    prod.refresh_from_db()
    assert prod.silenced is False


@pytest.mark.django_db
def test_expire_silence_ends_it_now_and_releases_alerts(users):
    rule = make_rule()
    alert = make_alert(rule, "a")
    created = silence_rule(rule_id=rule.pk, duration_hours=1, user=users["operator"], source=AuditSource.API, now=NOW)
    later = NOW + timedelta(minutes=5)

    expire_silence(silence_id=created.pk, user=users["operator"], source=AuditSource.API, now=later)

    created.refresh_from_db()
    alert.refresh_from_db()
    assert created.ends_at == later
    assert alert.silenced is False
    with pytest.raises(SilenceError, match="already ended"):
        expire_silence(silence_id=created.pk, user=users["operator"], source=AuditSource.API, now=later)
    assert AuditLogEntry.objects.filter(object_type="alerts.silence", action=AuditAction.DELETE).count() == 1


@pytest.mark.django_db
def test_maintenance_window_on_a_target_silences_its_alerts():
    gateway = MonitoringTarget.objects.create(name="Gateway", slug="gateway-1")
    window = MaintenanceWindow.objects.create(
        name="Monday patching", weekdays=[0], start_time=time(11, 30), duration_minutes=60, time_zone="UTC"
    )
    window.targets.add(gateway)
    MaintenanceWindow.objects.create(name="off", weekdays=[0], start_time=time(11, 30), enabled=False)
    rule = make_rule()
    by_fk = make_alert(rule, "a", target=gateway)
    by_label = make_alert(rule, "b", {"target": "gateway-1"})
    elsewhere = make_alert(rule, "c", {"target": "gateway-2"})

    assert [w.name for w in active_windows(NOW)] == ["Monday patching"]
    assert active_windows(NOW + timedelta(hours=1)) == []
    refresh_silenced(NOW)

    assert set(Alert.objects.filter(silenced=True).values_list("pk", flat=True)) == {by_fk.pk, by_label.pk}
    elsewhere.refresh_from_db()
    assert not elsewhere.silenced
    assert current_silences(NOW).silencing(
        AlertFacts(id=None, rule_id=rule.pk, labels={}, target="gateway-1")
    ).name == ("Monday patching")


@pytest.mark.django_db
def test_dependency_suppression_is_applied_and_lifted():
    uplink = MonitoringTarget.objects.create(name="Uplink", slug="uplink")
    gateway = MonitoringTarget.objects.create(name="Gateway", slug="gateway", parent=uplink)
    rule = make_rule("service-down")
    parent_alert = make_alert(rule, "p", {"target": "uplink"})
    child_alert = make_alert(rule, "c", target=gateway)
    resolved_child = make_alert(make_rule("other"), "r", target=gateway, state=AlertState.RESOLVED)

    assert apply_dependency_suppression(NOW) == []
    child_alert.refresh_from_db()
    assert child_alert.suppressed_by == parent_alert
    resolved_child.refresh_from_db()
    assert resolved_child.suppressed_by is None  # closed alerts are left alone

    # The parent recovers: the child, still firing, is released and reported.
    Alert.objects.filter(pk=parent_alert.pk).update(state=AlertState.RESOLVED)
    released = apply_dependency_suppression(NOW)

    assert [a.pk for a in released] == [child_alert.pk]
    child_alert.refresh_from_db()
    assert child_alert.suppressed_by is None
