"""The evaluation service: evaluates alert rules against the stored samples and writes their
transitions and AlertEvents, one transaction per rule under a row lock, so the beat path,
the on-ingest path and a redelivered task can run at once without doubling anything."""

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Count, Q

from monitoring.instant import DEFAULT_LOOKBACK_S, instant_vectors
from monitoring.models import GlobalSettings, MonitoringTarget

from .choices import AlertState, Severity
from .engine import AlertStatus, Evaluation, InstantValue, RuleSpec, RuleSpecError, Transition, evaluate, is_due
from .history import record_event
from .models import Alert, AlertRule
from .silencing import AlertFacts, SilenceSet, current_silences, decide_suppression

log = logging.getLogger("alerts.evaluation")

# Internal metrics pushed through the ingestion path after a round.
ACTIVE_ALERTS_METRIC = "active_alerts"
ALERTS_FIRED_METRIC = "alerts_fired_total"
# The fields of an open alert that the engine reads.
STATUS_FIELDS = ("fingerprint", "labels", "state", "pending_since", "fired_at", "last_true_at", "false_since", "value")


@dataclass(frozen=True)
class EvaluationSummary:
    evaluated: int = 0
    not_due: int = 0
    transitions: Mapping[str, int] = field(default_factory=dict)  # to_state -> count
    invalid: tuple[int, ...] = ()  # ids of rules the engine cannot evaluate

    def line(self) -> str:
        moves = ", ".join(f"{state}={count}" for state, count in sorted(self.transitions.items())) or "none"
        text = f"evaluated {self.evaluated} rule(s), {self.not_due} not due; transitions: {moves}"
        return text + (f"; invalid rules {list(self.invalid)}" if self.invalid else "")


def spec_for_rule(rule: AlertRule) -> RuleSpec:
    """The engine's view of a rule (works on an unsaved rule too, for previews)."""
    return RuleSpec(
        metric=rule.metric,
        comparison=rule.comparison,
        threshold=rule.threshold,
        duration_s=rule.duration or 0,
        severity=rule.severity,
        matchers=dict(rule.matchers or {}),
        labels=dict(rule.labels or {}),
        resolve_after_s=rule.resolve_after or 0,
        evaluation_interval_s=rule.evaluation_interval or None,
    )


def default_evaluation_interval() -> int:
    stored = GlobalSettings.objects.filter(pk=1).values_list("evaluation_interval", flat=True).first()
    return stored or GlobalSettings._meta.get_field("evaluation_interval").default


def evaluate_rules(
    rule_ids: Iterable[int] | None = None, *, now: datetime, only_due: bool = False
) -> EvaluationSummary:
    """Evaluate the enabled rules (those of `rule_ids`, or all) at `now` and write what changed.

    With `only_due` (the beat path), rules evaluated less than their interval ago are
    skipped. Instant values and open alerts are read for all rules at once; a rule whose
    evaluation changes an alert's state is then evaluated again under a lock on its row, on
    fresh alerts, and written in one transaction. The other rules only refresh their open
    alerts' values."""
    rules = AlertRule.objects.enabled().filter(expr="")
    if rule_ids is not None:
        rules = rules.filter(id__in=list(rule_ids))
    specs: dict[int, tuple[AlertRule, RuleSpec]] = {}
    invalid = []
    for rule in rules:
        try:
            specs[rule.id] = (rule, spec_for_rule(rule))
        except RuleSpecError as exc:
            log.warning("rule %s (%s) not evaluated: %s", rule.id, rule.key, exc)
            invalid.append(rule.id)
    not_due = 0
    if only_due:
        interval = default_evaluation_interval()
        due = {
            rule_id: entry
            for rule_id, entry in specs.items()
            if is_due(
                entry[1],
                last_evaluated_at=entry[0].last_evaluated_at,
                now=now,
                default_interval_s=interval,
                slack_s=interval / 2,
            )
        }
        not_due = len(specs) - len(due)
        specs = due
    if not specs:
        return EvaluationSummary(not_due=not_due, invalid=tuple(invalid))

    vectors = instant_vectors({spec.metric for _, spec in specs.values()}, now, DEFAULT_LOOKBACK_S)
    values_by_metric = {
        metric: [InstantValue(sample.labels, sample.value) for sample in samples] for metric, samples in vectors.items()
    }
    open_alerts: dict[int, list[Alert]] = {rule_id: [] for rule_id in specs}
    for alert in Alert.objects.open().filter(rule_id__in=list(specs)).only(*STATUS_FIELDS, "id", "rule_id"):
        open_alerts[alert.rule_id].append(alert)

    transitions: Counter[str] = Counter()
    refresh: list[Alert] = []
    hold_back = HoldBack(now)
    for rule_id, (_, spec) in specs.items():
        values = values_by_metric[spec.metric]
        alerts = open_alerts[rule_id]
        outcome = evaluate(spec, values, [alert_status(alert) for alert in alerts], now)
        if _changes_state(alerts, outcome):
            for transition in write_rule_evaluation(rule_id, values, now=now, hold_back=hold_back):
                transitions[transition.to_state] += 1
        else:
            refresh.extend(_refreshed(alerts, outcome))
    if refresh:
        # Values only, no state: no lock needed, the last writer's value is as good as any.
        Alert.objects.bulk_update(refresh, ["value", "last_true_at"], batch_size=500)
    AlertRule.objects.filter(id__in=list(specs)).filter(
        Q(last_evaluated_at__isnull=True) | Q(last_evaluated_at__lt=now)
    ).update(last_evaluated_at=now)

    summary = EvaluationSummary(len(specs), not_due, dict(transitions), tuple(invalid))
    if rule_ids is None or transitions:
        # A round of every rule keeps the series fresh; a triggered round pushes only when
        # something changed, so a rule watching these metrics cannot start a loop.
        push_alert_metrics(now=now)
    log.info("%s", summary.line())
    return summary


def write_rule_evaluation(
    rule_id: int, values: Sequence[InstantValue], *, now: datetime, hold_back: "HoldBack | None" = None
) -> list[Transition]:
    """Evaluate one rule on its open alerts as stored, under a lock on the rule's row, and
    write the transitions, their events and the alerts' new state in one transaction.
    Returns the transitions written (none when another evaluation got there first)."""
    hold_back = hold_back or HoldBack(now)
    with transaction.atomic():
        rule = AlertRule.objects.select_for_update().filter(pk=rule_id, enabled=True).first()
        if rule is None:
            return []  # deleted or disabled meanwhile
        if rule.last_evaluated_at is not None and rule.last_evaluated_at > now:
            return []  # a later evaluation was already written: never step back in time
        alerts = {alert.fingerprint: alert for alert in Alert.objects.open().filter(rule=rule).select_for_update()}
        spec = spec_for_rule(rule)
        outcome = evaluate(spec, values, [alert_status(alert) for alert in alerts.values()], now)
        targets = _targets_of(t.labels for t in outcome.transitions if t.from_state is None)
        written = []
        for transition in outcome.transitions:
            if transition.from_state is None:
                alert = _open_alert(rule, transition, outcome.alerts[transition.fingerprint], targets, hold_back)
                if alert is None:
                    continue
            else:
                alert = alerts[transition.fingerprint]
                _apply_transition(alert, transition, outcome.alerts.get(transition.fingerprint), hold_back)
            record_event(
                alert=alert,
                from_state=transition.from_state or "",
                to_state=transition.to_state,
                at=now,
                value=transition.value,
            )
            written.append(transition)
        changed = {t.fingerprint for t in outcome.transitions}
        updates = [
            _copy_status(alerts[fp], status)
            for fp, status in outcome.alerts.items()
            if fp in alerts and fp not in changed
        ]
        if updates:
            Alert.objects.bulk_update(updates, ["value", "last_true_at", "false_since"])
        rule.last_evaluated_at = now
        rule.save(update_fields=["last_evaluated_at"])
    return written


def alert_status(alert: Alert) -> AlertStatus:
    """The engine's view of an open alert."""
    return AlertStatus(
        fingerprint=alert.fingerprint,
        labels=alert.labels,
        state=AlertState(alert.state),
        pending_since=alert.pending_since,
        fired_at=alert.fired_at,
        last_true_at=alert.last_true_at,
        false_since=alert.false_since,
        value=alert.value,
    )


def push_alert_metrics(*, now: datetime) -> None:
    """Store `active_alerts{severity}` (firing alerts now) and `alerts_fired_total{rule,
    severity}` (alerts of each rule that ever fired, counted from the table, so every
    process agrees) through the ingestion path."""
    from monitoring.ingest import SampleIn, ingest_samples

    firing = dict(Alert.objects.firing().values_list("severity").annotate(n=Count("id")).values_list("severity", "n"))
    timestamp = now.timestamp()
    samples = [
        SampleIn(ACTIVE_ALERTS_METRIC, {"severity": severity}, float(firing.get(severity, 0)), timestamp)
        for severity in Severity.values
    ]
    fired = (
        Alert.objects.filter(fired_at__isnull=False)
        .values_list("rule__key", "severity")
        .annotate(n=Count("id"))
        .values_list("rule__key", "severity", "n")
    )
    samples += [
        SampleIn(ALERTS_FIRED_METRIC, {"rule": key, "severity": severity}, float(n), timestamp)
        for key, severity, n in fired
    ]
    ingest_samples(samples, now=now)


def _changes_state(alerts: list[Alert], outcome: Evaluation) -> bool:
    """Whether the outcome changes more than the values of the open alerts."""
    if outcome.transitions:
        return True
    return any(outcome.alerts[alert.fingerprint].false_since != alert.false_since for alert in alerts)


def _refreshed(alerts: list[Alert], outcome: Evaluation) -> list[Alert]:
    changed = []
    for alert in alerts:
        status = outcome.alerts[alert.fingerprint]
        if not _same_value(status.value, alert.value) or status.last_true_at != alert.last_true_at:
            alert.value = status.value
            alert.last_true_at = status.last_true_at
            changed.append(alert)
    return changed


def _same_value(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and a != a and b != b)  # NaN equals NaN here


def _copy_status(alert: Alert, status: AlertStatus) -> Alert:
    alert.value = status.value
    alert.last_true_at = status.last_true_at
    alert.false_since = status.false_since
    return alert


def _targets_of(label_sets: Iterable[Mapping[str, str]]) -> dict[str, int]:
    slugs = {labels["target"] for labels in label_sets if labels.get("target")}
    if not slugs:
        return {}
    return dict(MonitoringTarget.objects.filter(slug__in=slugs).values_list("slug", "id"))


def _open_alert(
    rule: AlertRule, transition: Transition, status: AlertStatus, targets: dict[str, int], hold_back: "HoldBack"
) -> Alert | None:
    """Create the alert of a new (rule, series); None when one is already open, which only
    a writer that bypassed the rule lock can cause: the partial unique constraint refuses
    the second one and this evaluation leaves the first alone."""
    alert = Alert(
        rule=rule,
        fingerprint=transition.fingerprint,
        labels=dict(transition.labels),
        severity=rule.severity,
        state=transition.to_state,
        value=transition.value,
        message=_message(rule, transition.value),
        target_id=targets.get(transition.labels.get("target", "")),
        pending_since=status.pending_since,
        fired_at=status.fired_at,
        last_true_at=status.last_true_at,
        created_at=transition.at,
    )
    hold_back.decide(alert)
    try:
        with transaction.atomic():
            alert.save()
    except IntegrityError:
        log.warning("rule %s: an alert for %s is already open; not creating another", rule.id, dict(transition.labels))
        return None
    return alert


def _apply_transition(alert: Alert, transition: Transition, status: AlertStatus | None, hold_back: "HoldBack") -> None:
    alert.state = transition.to_state
    if transition.value is not None:
        alert.value = transition.value
    fields = ["state", "value", "updated_at"]
    if transition.to_state == AlertState.ACTIVE:
        # Firing from pending: whether its notification is held back is decided afresh.
        alert.fired_at = transition.at
        alert.last_true_at = status.last_true_at if status else transition.at
        hold_back.decide(alert)
        fields += ["fired_at", "last_true_at", "silenced", "suppressed_by"]
    elif transition.to_state == AlertState.RESOLVED:
        alert.resolved_at = transition.at
        alert.next_escalation_at = None
        fields += ["resolved_at", "next_escalation_at"]
    alert.save(update_fields=fields)


class HoldBack:
    """Decides, in the transaction that records a new or newly firing alert, what holds its
    notifications back: a silence or maintenance window (`silenced`), or a firing alert on a
    parent target (`suppressed_by`), so whatever follows the transition sees it at once.
    The silences, the target tree and the firing alerts are loaded once per round, on first
    use; the silencing module's own passes keep the flags current afterwards."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._silences: SilenceSet | None = None
        self._parents: dict[str, str | None] | None = None
        self._firing: list[AlertFacts] | None = None

    def decide(self, alert: Alert) -> None:
        facts = AlertFacts(
            id=alert.pk or 0,  # a new alert has no id yet; only its ancestors' ids matter
            rule_id=alert.rule_id,
            labels=alert.labels,
            target=alert.labels.get("target") or None,
            rule_key=alert.rule.key,
            severity=alert.severity,
            firing=alert.state in (AlertState.ACTIVE, AlertState.ACKNOWLEDGED),
        )
        if self._silences is None:
            self._silences = current_silences(self.now)
        alert.silenced = self._silences.is_silenced(facts)
        alert.suppressed_by_id = self._suppressor(facts)

    def _suppressor(self, facts: AlertFacts) -> int | None:
        if self._parents is None:
            self._parents = dict(
                MonitoringTarget.objects.filter(parent__isnull=False).values_list("slug", "parent__slug")
            )
        if not facts.target or facts.target not in self._parents:
            return None
        if self._firing is None:
            self._firing = [
                AlertFacts(id=pk, rule_id=rule_id, labels=labels, target=slug or labels.get("target"), firing=True)
                for pk, rule_id, labels, slug in Alert.objects.firing().values_list(
                    "pk", "rule_id", "labels", "target__slug"
                )
            ]
        return decide_suppression([facts, *self._firing], self._parents).get(facts.id)


def _message(rule: AlertRule, value: float | None) -> str:
    return (
        f"{rule.name}: {rule.metric} {rule.comparison} {rule.threshold:g} (value {value:g})"
        if value is not None
        else rule.name
    )
