"""Evaluation on ingest: after samples of a metric are stored, the rules watching that metric
are evaluated within about a second, debounced so a flood of batches costs one evaluation
per rule per second."""

import logging
import time
from collections.abc import Iterable

import redis
from django.db.models.signals import post_delete, post_save
from kombu.exceptions import OperationalError as BrokerError

from monitoring.redis import redis_client

from .models import AlertRule

log = logging.getLogger("alerts.triggers")

# Rules are edited rarely and batches arrive many times a second: the metric -> rule ids map
# is kept per process for a few seconds (and dropped at once when this process saves a rule).
WATCHED_METRICS_TTL_S = 5.0
DEBOUNCE_KEY = "alerts:eval-slot:{rule_id}:{slot}"

_watched: dict[str, tuple[int, ...]] = {}
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
    """Ids of the enabled rules on any of `metric_names`, sorted."""
    watched = _watched_metrics()
    return sorted({rule_id for name in metric_names for rule_id in watched.get(name, ())})


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


def _watched_metrics() -> dict[str, tuple[int, ...]]:
    global _watched, _watched_loaded_at
    if time.monotonic() - _watched_loaded_at < WATCHED_METRICS_TTL_S:
        return _watched
    by_metric: dict[str, list[int]] = {}
    # Rules with a PromQL `expr` are not evaluated by this engine (alerts.evaluation skips them).
    for metric, rule_id in AlertRule.objects.enabled().filter(expr="").values_list("metric", "id"):
        by_metric.setdefault(metric, []).append(rule_id)
    _watched = {metric: tuple(ids) for metric, ids in by_metric.items()}
    _watched_loaded_at = time.monotonic()
    return _watched


post_save.connect(forget_watched_metrics, sender=AlertRule, dispatch_uid="alerts-triggers-forget-on-save")
post_delete.connect(forget_watched_metrics, sender=AlertRule, dispatch_uid="alerts-triggers-forget-on-delete")
