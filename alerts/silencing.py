"""What holds an alert's notifications back without changing its state: silences (by rule
or label matchers), recurring maintenance windows, and a firing parent target
(dependencies). Pure decisions first, then the services that apply them."""

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.contrib.auth.models import User
from django.db import transaction

from monitoring.audit import record_audit
from monitoring.choices import AuditAction, AuditSource

from .choices import FIRING_STATES, MatchOp, ScheduleKind
from .models import Alert, AlertRule, MaintenanceWindow, Silence

# A silence by rule longer than a year is a disabled rule in disguise.
MAX_SILENCE_HOURS = 24 * 365


class SilenceError(ValueError):
    """Input that cannot make a silence or a maintenance window. `field` names the input."""

    def __init__(self, message: str, field: str = "non_field_errors") -> None:
        super().__init__(message)
        self.field = field


# --- Matchers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    """One label matcher as in Prometheus: `name op value`. Regexes match the whole value."""

    name: str
    op: MatchOp
    value: str
    pattern: re.Pattern | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        # As in Prometheus, a missing label is the empty string: {env!="prod"} matches
        # an alert without `env`, and {env=~".*"} matches everything.
        actual = str(labels.get(self.name, ""))
        if self.op == MatchOp.EQ:
            return actual == self.value
        if self.op == MatchOp.NE:
            return actual != self.value
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op == MatchOp.RE else not found

    def as_dict(self) -> dict:
        return {"name": self.name, "op": str(self.op), "value": self.value}


def parse_matcher(raw: object) -> Matcher:
    """Turn `{"name", "op", "value"}` into a Matcher; refuse unknown operators and invalid
    regexes with a message that says which."""
    if not isinstance(raw, Mapping):
        raise SilenceError('Each matcher is an object {"name", "op", "value"}.', "matchers")
    name, op, value = raw.get("name"), raw.get("op", MatchOp.EQ), raw.get("value")
    if not isinstance(name, str) or not name:
        raise SilenceError("A matcher needs a label name.", "matchers")
    if not isinstance(value, str):
        raise SilenceError(f"The value of the matcher on {name!r} must be a string.", "matchers")
    if op not in MatchOp.values:
        raise SilenceError(
            f"Unknown matcher operator {op!r} on {name!r}; use one of {', '.join(MatchOp.values)}.", "matchers"
        )
    pattern = None
    if op in (MatchOp.RE, MatchOp.NRE):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise SilenceError(f"Invalid regular expression {value!r} on {name!r}: {exc}.", "matchers") from exc
    return Matcher(name=name, op=MatchOp(op), value=value, pattern=pattern)


def parse_matchers(raw: object) -> tuple[Matcher, ...]:
    if raw in (None, ""):
        return ()
    if not isinstance(raw, list):
        raise SilenceError('Matchers are a list of {"name", "op", "value"} objects.', "matchers")
    return tuple(parse_matcher(item) for item in raw)


# --- What an alert looks like to these decisions ---------------------------------------------


@dataclass(frozen=True)
class AlertFacts:
    """The parts of an alert that silences, windows and dependencies look at."""

    id: int | None
    rule_id: int
    labels: Mapping[str, str]
    target: str | None = None  # the target's slug: Alert.target, else the `target` label
    rule_key: str = ""
    severity: str = ""
    firing: bool = False

    def match_labels(self) -> dict[str, str]:
        """The labels that matchers see: the alert's, plus `alertname` (the rule's key) and
        `severity`, as in Alertmanager."""
        labels = {str(k): str(v) for k, v in self.labels.items()}
        if self.rule_key:
            labels.setdefault("alertname", self.rule_key)
        if self.severity:
            labels.setdefault("severity", self.severity)
        return labels


def facts_for(alert: Alert) -> AlertFacts:
    """Facts of a stored alert; select_related("rule", "target") keeps this query-free."""
    target = alert.target.slug if alert.target_id else alert.labels.get("target")
    return AlertFacts(
        id=alert.pk,
        rule_id=alert.rule_id,
        labels=alert.labels or {},
        target=target or None,
        rule_key=alert.rule.key,
        severity=alert.severity,
        firing=alert.state in FIRING_STATES,
    )


# --- Silences -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SilenceSpec:
    id: int | None
    rule_id: int | None
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, alert: AlertFacts, now: datetime) -> bool:
        """Decide whether this silence holds the alert back at `now`: it is running, its
        rule (if any) is the alert's, and every matcher matches."""
        if not self.is_active(now):
            return False
        if self.rule_id is None and not self.matchers:
            return False  # an empty silence would silence everything; models refuse it too
        if self.rule_id is not None and self.rule_id != alert.rule_id:
            return False
        labels = alert.match_labels()
        return all(m.matches(labels) for m in self.matchers)


def spec_for_silence(silence: Silence) -> SilenceSpec:
    return SilenceSpec(
        id=silence.pk,
        rule_id=silence.rule_id,
        matchers=parse_matchers(silence.matchers),
        starts_at=silence.starts_at,
        ends_at=silence.ends_at,
    )


# --- Maintenance windows ---------------------------------------------------------------------


@dataclass(frozen=True)
class WindowSpec:
    id: int | None
    name: str
    kind: ScheduleKind
    time_zone: str
    duration: timedelta
    weekdays: frozenset[int] = frozenset()
    start_time: time | None = None
    cron: str = ""
    targets: frozenset[str] = frozenset()
    matchers: tuple[Matcher, ...] = ()

    def last_start(self, now: datetime) -> datetime | None:
        """The latest start of this window at or before `now` (in UTC), or None.

        Starts are wall-clock times in the window's time zone, so a 22:00 window stays at
        22:00 local across DST changes; the duration is elapsed time from that start."""
        zone = ZoneInfo(self.time_zone)
        local_now = now.astimezone(zone)
        if self.kind == ScheduleKind.CRON:
            # croniter's get_prev is strictly before its base; one second later makes a
            # start at exactly `now` count.
            start = croniter(self.cron, local_now + timedelta(seconds=1)).get_prev(datetime)
            return start.astimezone(UTC)
        if self.start_time is None or not self.weekdays:
            return None
        # Look back far enough for a window that started days ago and still runs.
        days_back = math.ceil(self.duration / timedelta(days=1)) + 1
        for offset in range(days_back + 1):
            day: date = local_now.date() - timedelta(days=offset)
            if day.weekday() not in self.weekdays:
                continue
            start = datetime.combine(day, self.start_time, tzinfo=zone).astimezone(UTC)
            if start <= now:
                return start
        return None

    def is_active(self, now: datetime) -> bool:
        start = self.last_start(now)
        return start is not None and start <= now < start + self.duration

    def applies_to(self, alert: AlertFacts) -> bool:
        """Decide whether the window covers the alert: its target is one of the window's
        (when it names targets) and every matcher matches (when it has any). A window with
        neither covers nothing."""
        if not self.targets and not self.matchers:
            return False
        if self.targets and alert.target not in self.targets:
            return False
        labels = alert.match_labels()
        return all(m.matches(labels) for m in self.matchers)

    def matches(self, alert: AlertFacts, now: datetime) -> bool:
        return self.applies_to(alert) and self.is_active(now)


def validate_schedule(
    *, kind: str, weekdays: object, start_time: time | None, cron: str, time_zone: str, duration_minutes: int
) -> None:
    """Refuse a maintenance-window schedule that could never be evaluated."""
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SilenceError(
            f"Unknown time zone {time_zone!r}; use an IANA name like Europe/Berlin.", "time_zone"
        ) from exc
    if duration_minutes <= 0:
        raise SilenceError("A maintenance window must last at least one minute.", "duration_minutes")
    if kind == ScheduleKind.CRON:
        if not cron or not croniter.is_valid(cron):
            raise SilenceError(f"Invalid cron expression {cron!r}; e.g. '0 2 * * 0' is Sundays at 02:00.", "cron")
    elif kind == ScheduleKind.WEEKLY:
        if not isinstance(weekdays, list) or not weekdays:
            raise SilenceError("A weekly window needs weekdays (0=Monday … 6=Sunday).", "weekdays")
        if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in weekdays):
            raise SilenceError("Weekdays are numbers from 0 (Monday) to 6 (Sunday).", "weekdays")
        if start_time is None:
            raise SilenceError("A weekly window needs a start time.", "start_time")
    else:
        raise SilenceError(f"Unknown schedule kind {kind!r}.", "schedule_kind")


def spec_for_window(window: MaintenanceWindow) -> WindowSpec:
    """The window as data; its targets must be prefetched to keep this query-free."""
    return WindowSpec(
        id=window.pk,
        name=window.name,
        kind=ScheduleKind(window.schedule_kind),
        time_zone=window.time_zone,
        duration=timedelta(minutes=window.duration_minutes),
        weekdays=frozenset(window.weekdays or ()),
        start_time=window.start_time,
        cron=window.cron,
        targets=frozenset(t.slug for t in window.targets.all()),
        matchers=parse_matchers(window.matchers),
    )


# --- Everything that silences, at one moment ---------------------------------------------------


@dataclass(frozen=True)
class SilenceSet:
    """The silences and maintenance windows in force at `now`, loaded once per pass."""

    now: datetime
    silences: tuple[SilenceSpec, ...] = ()
    windows: tuple[WindowSpec, ...] = ()

    def silencing(self, alert: AlertFacts) -> SilenceSpec | WindowSpec | None:
        """The first silence or window that holds the alert back, or None."""
        for silence in self.silences:
            if silence.matches(alert, self.now):
                return silence
        for window in self.windows:
            if window.matches(alert, self.now):
                return window
        return None

    def is_silenced(self, alert: AlertFacts) -> bool:
        return self.silencing(alert) is not None


def _usable_window_specs(windows: Iterable[MaintenanceWindow]) -> list[WindowSpec]:
    specs = []
    for window in windows:
        try:
            specs.append(spec_for_window(window))
        except (SilenceError, ValueError, ZoneInfoNotFoundError):
            # A window saved with a broken schedule (bypassing validation) silences nothing
            # rather than breaking every evaluation.
            continue
    return specs


def active_windows(now: datetime) -> list[MaintenanceWindow]:
    """The enabled maintenance windows running at `now`."""
    windows = MaintenanceWindow.objects.filter(enabled=True).prefetch_related("targets")
    running_ids = {spec.id for spec in _usable_window_specs(windows) if spec.is_active(now)}
    return [w for w in windows if w.pk in running_ids]


def current_silences(now: datetime) -> SilenceSet:
    """Load the silences and windows in force at `now` (two or three queries), for
    deciding many alerts at once, e.g. right after an evaluation."""
    silences = Silence.objects.filter(starts_at__lte=now, ends_at__gt=now)
    silence_specs = []
    for silence in silences:
        try:
            silence_specs.append(spec_for_silence(silence))
        except SilenceError:
            continue  # stored with an invalid matcher outside the API: ignore, do not crash
    windows = MaintenanceWindow.objects.filter(enabled=True).prefetch_related("targets")
    window_specs = [spec for spec in _usable_window_specs(windows) if spec.is_active(now)]
    return SilenceSet(now=now, silences=tuple(silence_specs), windows=tuple(window_specs))


def refresh_silenced(now: datetime) -> list[Alert]:
    """Set `Alert.silenced` on every open alert from the silences and windows in force at
    `now`. Returns the firing alerts that have just stopped being silenced: the
    notifications part notifies those now (a silence ended while they still fire)."""
    silence_set = current_silences(now)
    alerts = list(Alert.objects.open().select_related("rule", "target"))
    to_silence, to_release = [], []
    for alert in alerts:
        silenced = silence_set.is_silenced(facts_for(alert))
        if silenced and not alert.silenced:
            to_silence.append(alert.pk)
        elif not silenced and alert.silenced:
            to_release.append(alert)
    # Only the `silenced` column is written, so a concurrent evaluation changing state
    # loses nothing; the next pass corrects a flag that raced.
    if to_silence:
        Alert.objects.filter(pk__in=to_silence).update(silenced=True)
    if to_release:
        Alert.objects.filter(pk__in=[a.pk for a in to_release]).update(silenced=False)
    for alert in to_release:
        alert.silenced = False
    return [a for a in to_release if a.state in FIRING_STATES]


# --- Silence services ---------------------------------------------------------------------------


def _check_window(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise SilenceError("A silence must end after it starts.", "ends_at")


def create_silence(
    *,
    user: User | None,
    matchers: object,
    ends_at: datetime,
    starts_at: datetime | None = None,
    rule_id: int | None = None,
    comment: str = "",
    source: AuditSource | str,
    now: datetime,
    api_key_name: str = "",
    ip: str | None = None,
) -> Silence:
    """Create a silence by rule and/or label matchers, from `starts_at` (default now) to
    `ends_at`, and mark the alerts it covers. Invalid regexes are refused here."""
    parsed = parse_matchers(matchers)
    starts_at = starts_at or now
    _check_window(starts_at, ends_at)
    if rule_id is None and not parsed:
        raise SilenceError("A silence needs a rule or at least one label matcher.", "matchers")
    with transaction.atomic():
        rule = None
        if rule_id is not None:
            rule = AlertRule.objects.filter(pk=rule_id).first()
            if rule is None:
                raise SilenceError(f"There is no alert rule {rule_id}.", "rule")
        silence = Silence.objects.create(
            rule=rule,
            matchers=[m.as_dict() for m in parsed],
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=user,
            comment=comment,
            created_at=now,
        )
        record_audit(
            actor=user,
            source=source,
            action=AuditAction.SILENCE,
            obj=silence,
            after=silence_snapshot(silence),
            api_key_name=api_key_name,
            ip=ip,
            at=now,
        )
        refresh_silenced(now)
    return silence


def silence_rule(
    *,
    rule_id: int,
    duration_hours: float,
    user: User | None,
    comment: str = "",
    source: AuditSource | str,
    now: datetime,
    api_key_name: str = "",
    ip: str | None = None,
) -> Silence:
    """Silence every alert of one rule for `duration_hours` from now (the original
    design's `rules silence`). Raises AlertRule.DoesNotExist for an unknown rule."""
    if isinstance(duration_hours, bool) or not isinstance(duration_hours, int | float):
        raise SilenceError("The duration is a number of hours.", "duration_hours")
    if not math.isfinite(duration_hours) or duration_hours <= 0 or duration_hours > MAX_SILENCE_HOURS:
        raise SilenceError(
            f"The duration must be more than 0 and at most {MAX_SILENCE_HOURS} hours; got {duration_hours}.",
            "duration_hours",
        )
    rule = AlertRule.objects.get(pk=rule_id)
    return create_silence(
        user=user,
        matchers=[],
        rule_id=rule.pk,
        starts_at=now,
        ends_at=now + timedelta(hours=duration_hours),
        comment=comment or f"Rule {rule.key} silenced for {duration_hours:g} h",
        source=source,
        now=now,
        api_key_name=api_key_name,
        ip=ip,
    )


def expire_silence(
    *,
    silence_id: int,
    user: User | None,
    source: AuditSource | str,
    now: datetime,
    api_key_name: str = "",
    ip: str | None = None,
) -> Silence:
    """End a silence now (as Alertmanager does, the row stays as history). A silence that
    has not started yet ends before it starts. Raises Silence.DoesNotExist, or
    SilenceError for a silence that has already ended."""
    with transaction.atomic():
        silence = Silence.objects.select_for_update().get(pk=silence_id)
        if silence.ends_at <= now:
            raise SilenceError(f"Silence {silence_id} already ended at {silence.ends_at.isoformat()}.", "id")
        before = silence_snapshot(silence)
        if silence.starts_at > now:
            silence.starts_at = now
        silence.ends_at = now
        silence.save(update_fields=["starts_at", "ends_at"])
        record_audit(
            actor=user,
            source=source,
            action=AuditAction.DELETE,
            obj=silence,
            before=before,
            after=silence_snapshot(silence),
            api_key_name=api_key_name,
            ip=ip,
            at=now,
        )
        refresh_silenced(now)
    return silence


def silence_snapshot(silence: Silence) -> dict:
    return {
        "rule": silence.rule_id,
        "matchers": silence.matchers,
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "comment": silence.comment,
    }


def silence_status(silence: Silence, now: datetime) -> str:
    """`pending` before it starts, `active` while it runs, `expired` after."""
    if now < silence.starts_at:
        return "pending"
    return "active" if now < silence.ends_at else "expired"


# --- Dependencies ----------------------------------------------------------------------------


def decide_suppression(alerts: Iterable[AlertFacts], parents: Mapping[str, str | None]) -> dict[int, int | None]:
    """Decide, for each alert, the parent-target alert that suppresses it (or None).

    An alert is suppressed while a firing alert exists on its target's parent; when the
    parent has none, the grandparent's counts, and so on up: the nearest firing ancestor
    wins. Among several firing alerts of one target, the lowest id (the oldest) is chosen,
    so the answer is stable between passes. `parents` maps a target's slug to its parent's."""
    alerts = list(alerts)
    firing_by_target: dict[str, int] = {}
    for alert in alerts:
        if alert.firing and alert.target and alert.id is not None:
            current = firing_by_target.get(alert.target)
            if current is None or alert.id < current:
                firing_by_target[alert.target] = alert.id
    decision: dict[int, int | None] = {}
    for alert in alerts:
        if alert.id is None:
            continue
        suppressor = None
        seen = {alert.target}
        ancestor = parents.get(alert.target) if alert.target else None
        # `seen` guards against a parent cycle saved around the model's clean().
        while ancestor and ancestor not in seen:
            if ancestor in firing_by_target:
                suppressor = firing_by_target[ancestor]
                break
            seen.add(ancestor)
            ancestor = parents.get(ancestor)
        decision[alert.id] = suppressor
    return decision


def apply_dependency_suppression(now: datetime) -> list[Alert]:
    """Set `suppressed_by` on open alerts from the current firing alerts of their targets'
    ancestors. Returns the firing alerts whose suppression was just lifted (the parent
    recovered while they still fire), for the notifications part to notify now. Closed
    alerts keep their `suppressed_by` as history."""
    from monitoring.models import MonitoringTarget

    parents = dict(MonitoringTarget.objects.filter(parent__isnull=False).values_list("slug", "parent__slug"))
    alerts = list(Alert.objects.open().select_related("rule", "target"))
    decision = decide_suppression((facts_for(a) for a in alerts), parents)
    changes: dict[int | None, list[int]] = {}
    released = []
    for alert in alerts:
        wanted = decision.get(alert.pk)
        if wanted != alert.suppressed_by_id:
            changes.setdefault(wanted, []).append(alert.pk)
            if wanted is None:
                released.append(alert)
            alert.suppressed_by_id = wanted
    # One UPDATE per suppressing alert (and one for releases), touching only this column.
    for suppressor, ids in changes.items():
        Alert.objects.filter(pk__in=ids).update(suppressed_by_id=suppressor)
    return [a for a in released if a.state in FIRING_STATES]
