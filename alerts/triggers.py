"""Evaluation on ingest: after samples of a metric are stored, the rules watching that metric
are evaluated within about a second, debounced so a flood of batches costs one evaluation
per rule per second."""

import logging
import time
from collections.abc import Iterable
from typing import NamedTuple

import redis
from django.db.models.signals import post_delete, post_save
from kombu.exceptions import OperationalError as BrokerError

from monitoring.promql import PromQLError, parse_expr
from monitoring.promql.ast import Matcher, selectors
from monitoring.redis import redis_client

from .models import AlertRule

log = logging.getLogger("alerts.triggers")

# Rules are edited rarely and batches arrive many times a second: the metric -> rule ids map
# (PromQL rules' expressions parsed for their selectors) is kept per process for a few
# seconds, and dropped at once when this process saves or deletes a rule.
WATCHED_METRICS_TTL_S = 5.0
DEBOUNCE_KEY = "alerts:eval-slot:{rule_id}:{slot}"

NAME_LABEL = "__name__"


class WatchedMetrics(NamedTuple):
    """Which enabled rules a metric's new samples concern: by exact metric name (metric rules
    and named PromQL selectors), and by the `__name__` matchers of unnamed selectors."""

    by_name: dict[str, tuple[int, ...]]
    by_pattern: tuple[tuple[tuple[Matcher, ...], int], ...]


_watched = WatchedMetrics({}, ())
_watched_loaded_at: float = float("-inf")


def on_metrics_changed(metric_names: frozenset[str]) -> None:
    """Schedule one evaluation of every enabled rule that watches one of `metric_names`.

    Called by the ingestion path after its transaction committed. Batches that arrive in the
    same second schedule one evaluation per rule, at the start of the next second, so it sees
    all of them. Never raises when Redis or the broker is away: the beat path catches up."""
    rule_ids = rules_watching(metric_names)
    if not rule_ids:
        return
    slot = int(time.time()) + 1
    try:
        due = claim_evaluation_slots(rule_ids, slot)
    except redis.RedisError as exc:
        log.warning("on-ingest evaluation of %d rule(s) skipped, Redis unavailable: %s", len(rule_ids), exc)
        return
    if not due:
        return
    from .tasks import evaluate_rules_task  # tasks import the evaluation service, which imports monitoring

    try:
        evaluate_rules_task.apply_async(kwargs={"rule_ids": due}, countdown=max(0.0, slot - time.time()))
    except (BrokerError, redis.RedisError, OSError) as exc:
        log.warning("on-ingest evaluation of rules %s not queued, broker unavailable: %s", due, exc)


def rules_watching(metric_names: Iterable[str]) -> list[int]:
    """Ids of the enabled rules on any of `metric_names`, sorted: metric rules by their
    metric, PromQL rules by the metric names their expression's selectors select."""
    watched = _watched_metrics()
    found = {rule_id for name in metric_names for rule_id in watched.by_name.get(name, ())}
    for name_matchers, rule_id in watched.by_pattern:
        if rule_id not in found and any(all(m.matches(name) for m in name_matchers) for name in metric_names):
            found.add(rule_id)
    return sorted(found)


def claim_evaluation_slots(rule_ids: Iterable[int], slot: int) -> list[int]:
    """The rules of `rule_ids` not yet scheduled for the evaluation at second `slot` (one
    Redis round trip; SET NX makes the claim exclusive across processes)."""
    rule_ids = list(rule_ids)
    pipe = redis_client().pipeline(transaction=False)
    for rule_id in rule_ids:
        pipe.set(DEBOUNCE_KEY.format(rule_id=rule_id, slot=slot), 1, nx=True, ex=10)
    return [rule_id for rule_id, claimed in zip(rule_ids, pipe.execute(), strict=True) if claimed]


def forget_watched_metrics(**kwargs: object) -> None:
    """Drop this process's metric -> rules map (a rule was saved or deleted)."""
    global _watched_loaded_at
    _watched_loaded_at = float("-inf")


def _watched_metrics() -> "WatchedMetrics":
    global _watched, _watched_loaded_at
    if time.monotonic() - _watched_loaded_at < WATCHED_METRICS_TTL_S:
        return _watched
    by_name: dict[str, list[int]] = {}
    by_pattern: list[tuple[tuple[Matcher, ...], int]] = []
    for rule_id, metric, expr in AlertRule.objects.enabled().values_list("id", "metric", "expr"):
        if not expr.strip():
            by_name.setdefault(metric, []).append(rule_id)
            continue
        try:
            found = selectors(parse_expr(expr))
        except PromQLError:
            continue  # not evaluable: the evaluation round reports it
        for selector in found:
            if selector.name is not None:
                by_name.setdefault(selector.name, []).append(rule_id)
            else:  # {__name__=~"cpu_.*"}: matched against each changed metric's name
                by_pattern.append((tuple(m for m in selector.matchers if m.name == NAME_LABEL), rule_id))
    _watched = WatchedMetrics({metric: tuple(sorted(set(ids))) for metric, ids in by_name.items()}, tuple(by_pattern))
    _watched_loaded_at = time.monotonic()
    return _watched


post_save.connect(forget_watched_metrics, sender=AlertRule, dispatch_uid="alerts-triggers-forget-on-save")
post_delete.connect(forget_watched_metrics, sender=AlertRule, dispatch_uid="alerts-triggers-forget-on-delete")
