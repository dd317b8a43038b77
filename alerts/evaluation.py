"""The evaluation service: evaluates alert rules against the stored samples and writes their
transitions and AlertEvents, one transaction per rule under a row lock, so the beat path,
the on-ingest path and a redelivered task can run at once without doubling anything."""

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q
from django.db.models.expressions import RawSQL

from monitoring.instant import DEFAULT_LOOKBACK_S, instant_vectors
from monitoring.models import GlobalSettings, MonitoringTarget
from monitoring.promql import validate_expr
from monitoring.promql.alerting import evaluate_expr_keys, expr_key, is_expr_key

from .choices import AlertState, Severity
from .engine import (
    AlertStatus,
    Evaluation,
    InstantValue,
    RuleSpec,
    RuleSpecError,
    Transition,
    evaluate,
    is_due,
    label_fingerprint,
)
from .history import record_event
from .models import Alert, AlertRule
from .silencing import AlertFacts, SilenceSet, current_silences, decide_suppression

log = logging.getLogger("alerts.evaluation")

# Internal metrics pushed through the ingestion path after a round.
ACTIVE_ALERTS_METRIC = "active_alerts"
ALERTS_FIRED_METRIC = "alerts_fired_total"
# Rules written per transaction when many change state in one round.
WRITE_CHUNK = 100
# The columns each kind of move of an open alert writes (silenced and suppression are
# decided when it fires; a resolve leaves them, which the silencing passes may be writing).
TRANSITION_COLUMNS: dict[AlertState, tuple[str, ...]] = {
    AlertState.ACTIVE: ("state", "value", "updated_at", "fired_at", "last_true_at", "silenced", "suppressed_by"),
    AlertState.RESOLVED: ("state", "value", "updated_at", "resolved_at", "next_escalation_at"),
    AlertState.INACTIVE: ("state", "value", "updated_at"),
}
# The fields of an open alert that the engine reads, in AlertStatus's order.
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
    """The engine's view of a rule (works on an unsaved rule too, for previews). A rule with
    a PromQL `expr` is keyed by its expression instead of a metric, and every series of the
    expression's result holds: `value != NaN` is true for every float, NaN included."""
    if rule.expr:
        problem = validate_expr(rule.expr)
        if problem:
            raise RuleSpecError(problem)
    return RuleSpec(
        metric=expr_key(rule.expr) if rule.expr else rule.metric,
        comparison="!=" if rule.expr else rule.comparison,
        threshold=math.nan if rule.expr else rule.threshold,
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
    rules = AlertRule.objects.enabled()
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

    keys = {spec.metric for _, spec in specs.values()}
    vectors = instant_vectors({key for key in keys if not is_expr_key(key)}, now, DEFAULT_LOOKBACK_S)
    values_by_metric = {
        metric: [InstantValue(sample.labels, sample.value, _fingerprint(sample.labels)) for sample in samples]
        for metric, samples in vectors.items()
    }
    # PromQL rules: each distinct expression once. One that fails to evaluate is left out,
    # and its rules are skipped this round (their alerts keep their state).
    for key, samples in evaluate_expr_keys({key for key in keys if is_expr_key(key)}, now).items():
        values_by_metric[key] = [InstantValue(labels, value, _fingerprint(labels)) for labels, value in samples]
    for rule_id in [rule_id for rule_id, (_, spec) in specs.items() if spec.metric not in values_by_metric]:
        invalid.append(rule_id)
        del specs[rule_id]
    open_alerts: dict[int, list[tuple[int, AlertStatus]]] = {rule_id: [] for rule_id in specs}
    rows = Alert.objects.open().filter(ids_in("rule_id", specs)).values_list("id", "rule_id", *STATUS_FIELDS)
    for alert_id, rule_id, fingerprint, labels, state, *times_and_value in rows:
        open_alerts[rule_id].append((alert_id, AlertStatus(fingerprint, labels, AlertState(state), *times_and_value)))

    to_write: list[int] = []
    refresh: list[tuple] = []
    for rule_id, (_, spec) in specs.items():
        alerts = open_alerts[rule_id]
        outcome = evaluate(spec, values_by_metric[spec.metric], [status for _, status in alerts], now)
        if _changes_state(alerts, outcome):
            to_write.append(rule_id)
        else:
            refresh += _value_rows(alerts, outcome, ("value", "last_true_at"))

    transitions: Counter[str] = Counter()
    hold_back = HoldBack(now)
    for start in range(0, len(to_write), WRITE_CHUNK):
        for transition in write_evaluations(to_write[start : start + WRITE_CHUNK], values_by_metric, now=now,
                                            hold_back=hold_back):  # fmt: skip
            transitions[transition.to_state] += 1
    with transaction.atomic():
        # Values only, no state change: no rule lock needed, the last writer's value is as
        # good as any. Rule rows are locked in id order, as write_evaluations does, so two
        # evaluations cannot deadlock.
        update_alert_columns(("value", "last_true_at"), refresh)
        quiet = AlertRule.objects.filter(ids_in("id", specs)).filter(
            Q(last_evaluated_at__isnull=True) | Q(last_evaluated_at__lt=now)
        )
        AlertRule.objects.filter(
            ids_in("id", quiet.select_for_update().order_by("pk").values_list("pk", flat=True))
        ).update(last_evaluated_at=now)

    summary = EvaluationSummary(len(specs), not_due, dict(transitions), tuple(invalid))
    if rule_ids is None or transitions:
        # A round of every rule keeps the series fresh; a triggered round pushes only when
        # something changed, so a rule watching these metrics cannot start a loop.
        push_alert_metrics(now=now)
    log.info("%s", summary.line())
    return summary


def write_evaluations(
    rule_ids: Sequence[int],
    values_by_metric: Mapping[str, Sequence[InstantValue]],
    *,
    now: datetime,
    hold_back: "HoldBack | None" = None,
) -> list[Transition]:
    """Evaluate the rules again on their open alerts as stored, under locks on the rules'
    rows and their open alerts (taken in id order, so two evaluations never deadlock), and
    write the transitions, their events and the alerts' new state in one transaction: all
    of a rule's writes commit together (several rules share the transaction when many
    change at once). Returns the transitions written: none for a rule disabled meanwhile
    or already evaluated at a later time, nor for an alert another evaluation already moved."""
    hold_back = hold_back or HoldBack(now)
    written: list[Transition] = []
    with transaction.atomic():
        locked = AlertRule.objects.select_for_update().filter(ids_in("id", rule_ids), enabled=True)
        # Never step back in time: a rule evaluated later than `now` keeps that evaluation.
        rules = [r for r in locked.order_by("pk") if r.last_evaluated_at is None or r.last_evaluated_at <= now]
        if not rules:
            return written
        rules_by_id = {rule.pk: rule for rule in rules}
        open_by_rule: dict[int, dict[str, Alert]] = {rule.pk: {} for rule in rules}
        for alert in Alert.objects.open().filter(rule__in=rules).select_for_update().order_by("pk"):
            alert.rule = rules_by_id[alert.rule_id]  # the locked row, not one query per alert later
            open_by_rule[alert.rule_id][alert.fingerprint] = alert

        outcomes: list[tuple[AlertRule, dict[str, Alert], Evaluation]] = []
        for rule in rules:
            try:
                spec = spec_for_rule(rule)
            except RuleSpecError:
                continue  # edited into something unusable meanwhile; the next round reports it
            if spec.metric not in values_by_metric:
                continue  # its metric was edited since the values were read: the next round
            alerts = open_by_rule[rule.pk]
            outcome = evaluate(spec, values_by_metric[spec.metric], [alert_status(a) for a in alerts.values()], now)
            outcomes.append((rule, alerts, outcome))

        new = _create_alerts(
            [(rule, t, outcome.alerts[t.fingerprint]) for rule, _, outcome in outcomes for t in outcome.transitions
             if t.from_state is None],
            hold_back,
        )  # fmt: skip
        moved: dict[AlertState, list[Alert]] = {}
        values: list[tuple] = []
        events: list[tuple[Alert, Transition]] = []
        for rule, alerts, outcome in outcomes:
            for transition in outcome.transitions:
                if transition.from_state is None:
                    alert = new.get((rule.pk, transition.fingerprint))
                    if alert is None:
                        continue
                else:
                    alert = alerts[transition.fingerprint]
                    _apply_transition(alert, transition, outcome.alerts.get(transition.fingerprint), hold_back)
                    moved.setdefault(transition.to_state, []).append(alert)
                events.append((alert, transition))
            still = [(alert.pk, alert_status(alert)) for fp, alert in alerts.items() if fp in outcome.alerts]
            values += _value_rows(still, outcome, ("value", "last_true_at", "false_since"))
        for to_state, alerts_moved in moved.items():
            columns = TRANSITION_COLUMNS[to_state]
            update_alert_columns(columns, [(a.pk, *(getattr(a, c) for c in columns)) for a in alerts_moved])
        update_alert_columns(("value", "last_true_at", "false_since"), values)
        for alert, transition in events:
            record_event(
                alert=alert,
                from_state=transition.from_state or "",
                to_state=transition.to_state,
                at=now,
                value=transition.value,
            )
            written.append(transition)
        AlertRule.objects.filter(ids_in("id", [rule.pk for rule in rules])).update(last_evaluated_at=now)
    return written


def ids_in(field: str, ids: Iterable[int]) -> Q:
    """`field IN ids`. On PostgreSQL as one array parameter: psycopg parses a query with a
    thousand placeholders on every call, which costs more than the query itself."""
    ids = list(ids)
    if connection.vendor == "postgresql":
        return Q(**{f"{field}__in": RawSQL("SELECT unnest(%s::bigint[])", [ids])})
    return Q(**{f"{field}__in": ids})


def update_alert_columns(columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Write `columns` of many alerts, `rows` being (id, *values): one statement on
    PostgreSQL (UPDATE ... FROM unnest), one executemany elsewhere. Django's bulk_update
    builds a CASE per row and column, which costs seconds for a thousand alerts."""
    if not rows:
        return
    rows = sorted(rows, key=lambda row: row[0])  # one lock order for every writer
    fields = [Alert._meta.get_field(column) for column in columns]
    names = [connection.ops.quote_name(field.column) for field in fields]
    prepared = [[f.get_db_prep_save(v, connection) for f, v in zip(fields, row[1:], strict=True)] for row in rows]
    table = connection.ops.quote_name(Alert._meta.db_table)
    # Table and column names come from the model (quoted), values are parameters.
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in fields)
            assignments = ", ".join(f"{name} = v.{name}" for name in names)
            cursor.execute(
                f"UPDATE {table} AS a SET {assignments} "  # noqa: S608
                f"FROM unnest(%s::bigint[], {arrays}) AS v(id, {', '.join(names)}) WHERE a.id = v.id",
                [[row[0] for row in rows], *(list(column) for column in zip(*prepared, strict=True))],
            )
        else:
            assignments = ", ".join(f"{name} = %s" for name in names)
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE id = %s",  # noqa: S608
                [(*values, row[0]) for values, row in zip(prepared, rows, strict=True)],
            )


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


def _changes_state(alerts: Sequence[tuple[int, AlertStatus]], outcome: Evaluation) -> bool:
    """Whether the outcome changes more than the values of the open alerts."""
    if outcome.transitions:
        return True
    return any(outcome.alerts[prev.fingerprint].false_since != prev.false_since for _, prev in alerts)


def _value_rows(alerts: Sequence[tuple[int, AlertStatus]], outcome: Evaluation, columns: Sequence[str]) -> list[tuple]:
    """(id, *columns) of the open alerts, given as (id, status before), whose value or
    bookkeeping the outcome changed."""
    rows = []
    for alert_id, prev in alerts:
        status = outcome.alerts[prev.fingerprint]
        if (
            not _same_value(status.value, prev.value)
            or status.last_true_at != prev.last_true_at
            or status.false_since != prev.false_since
        ):
            rows.append((alert_id, *(getattr(status, column) for column in columns)))
    return rows


# Fingerprints of the label sets seen, by their items in stored order: a round computes
# ten thousand of them otherwise. Dropped whole past FINGERPRINT_MEMO_LIMIT.
_fingerprints: dict[tuple[tuple[str, str], ...], str] = {}
FINGERPRINT_MEMO_LIMIT = 200_000


def _fingerprint(labels: Mapping[str, str]) -> str:
    key = tuple(labels.items())
    fingerprint = _fingerprints.get(key)
    if fingerprint is None:
        if len(_fingerprints) >= FINGERPRINT_MEMO_LIMIT:
            _fingerprints.clear()
        fingerprint = _fingerprints[key] = label_fingerprint(labels)
    return fingerprint


def _same_value(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and a != a and b != b)  # NaN equals NaN here


def _targets_of(label_sets: Iterable[Mapping[str, str]]) -> dict[str, int]:
    slugs = {labels["target"] for labels in label_sets if labels.get("target")}
    if not slugs:
        return {}
    return dict(MonitoringTarget.objects.filter(slug__in=slugs).values_list("slug", "id"))


def _create_alerts(
    opened: Sequence[tuple[AlertRule, Transition, AlertStatus]], hold_back: "HoldBack"
) -> dict[tuple[int, str], Alert]:
    """Create the alerts of new (rule, series) pairs, by (rule id, fingerprint). The rule
    locks make a conflict impossible for evaluations; should a writer that bypassed them
    have opened one already, the partial unique constraint refuses the second and that
    alert is left alone (inserted one by one, each in its own savepoint)."""
    if not opened:
        return {}
    targets = _targets_of(transition.labels for _, transition, _ in opened)
    alerts = []
    for rule, transition, status in opened:
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
        alerts.append(alert)
    try:
        with transaction.atomic():
            Alert.objects.bulk_create(alerts)
        created = alerts
    except IntegrityError:
        created = []
        for alert in alerts:
            try:
                with transaction.atomic():
                    alert.save()
            except IntegrityError:
                log.warning(
                    "rule %s: an alert for %s is already open; not opening another", alert.rule_id, alert.labels
                )
                continue
            created.append(alert)
    return {(alert.rule_id, alert.fingerprint): alert for alert in created}


def _apply_transition(alert: Alert, transition: Transition, status: AlertStatus | None, hold_back: "HoldBack") -> None:
    """Move an open alert's fields (in memory) as `transition` says; TRANSITION_COLUMNS
    names the columns each kind of move writes."""
    alert.state = transition.to_state
    alert.updated_at = transition.at
    if transition.value is not None:
        alert.value = transition.value
    if transition.to_state == AlertState.ACTIVE:
        # Firing from pending: whether its notification is held back is decided afresh.
        alert.fired_at = transition.at
        alert.last_true_at = status.last_true_at if status else transition.at
        hold_back.decide(alert)
    elif transition.to_state == AlertState.RESOLVED:
        alert.resolved_at = transition.at
        alert.next_escalation_at = None


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
    if value is None:
        return rule.name
    if rule.expr:
        return f"{rule.name}: {rule.expr} (value {value:g})"
    return f"{rule.name}: {rule.metric} {rule.comparison} {rule.threshold:g} (value {value:g})"
