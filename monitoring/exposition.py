"""`/metrics`: the Prometheus text exposition of the system's own metrics (ingestion
counters, series count, Celery queue lengths, the pipeline watchdog's figures) and of the latest value of every stored
series, with its timestamp."""

import logging
from collections.abc import Iterable, Iterator, Mapping

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_http_methods
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from rest_framework.exceptions import AuthenticationFailed

from .auth import ApiKeyAuthentication
from .choices import Role
from .models import Series
from .queries import iter_latest
from .redis import redis_client
from .roles import has_role

log = logging.getLogger("exposition")

# The text format Prometheus 2.x and 3.x both read (no UTF-8 names are ever written).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# kombu's Redis transport keeps a queue's messages of priority p > 0 in "<queue>\x06\x16<p>".
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)


def celery_queue_names() -> list[str]:
    """The Celery queues worth watching: the default one, the declared ones, those named
    in task routes, and any `*_QUEUE` setting (a queue an app sends its batches to)."""
    from config.celery import app

    names = {app.conf.task_default_queue or "celery"}
    names.update(app.amqp.queues.keys())
    routes = app.conf.task_routes
    if isinstance(routes, Mapping):
        names.update(route["queue"] for route in routes.values() if isinstance(route, Mapping) and "queue" in route)
    for setting in dir(settings):
        if setting.endswith("_QUEUE") and not setting.startswith("CELERY_"):
            value = getattr(settings, setting)
            if isinstance(value, str) and value:
                names.add(value)
    return sorted(names)


def celery_queue_lengths(queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each queue (every priority level), read with LLEN on the broker."""
    queues = list(queues)
    pipeline = redis_client().pipeline(transaction=False)
    for queue in queues:
        for priority in KOMBU_PRIORITY_STEPS:
            pipeline.llen(f"{queue}{KOMBU_PRIORITY_SEPARATOR}{priority}" if priority else queue)
    lengths = pipeline.execute()
    steps = len(KOMBU_PRIORITY_STEPS)
    return {queue: sum(lengths[i * steps : (i + 1) * steps]) for i, queue in enumerate(queues)}


class StorageCollector:
    """The metrics read at exposition time from the database and the broker."""

    def collect(self) -> Iterator[Metric]:
        series = GaugeMetricFamily("monitoring_series", "Stored metric series.")
        series.add_metric([], Series.objects.count())
        yield series
        try:
            lengths = celery_queue_lengths(celery_queue_names())
        except redis.RedisError as exc:
            # The exposition must still answer while the broker is away; the missing
            # gauge (and the `monitoring_broker_up` 0) say so.
            log.warning("cannot read Celery queue lengths: %s", exc)
            lengths = None
        broker = GaugeMetricFamily("monitoring_broker_up", "Whether the Celery broker (Redis) answered.")
        broker.add_metric([], 0.0 if lengths is None else 1.0)
        yield broker
        if lengths is not None:
            queues = GaugeMetricFamily(
                "monitoring_celery_queue_length", "Celery messages waiting in a queue.", labels=["queue"]
            )
            for queue, length in lengths.items():
                queues.add_metric([queue], length)
            yield queues


class _Families:
    """Already collected families, in the shape generate_latest() reads."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _reserved_names(families: Iterable[Metric]) -> set[str]:
    names = set()
    for family in families:
        names.update({family.name, f"{family.name}_total", f"{family.name}_info", f"{family.name}_created"})
        names.update(sample.name for sample in family.samples)
    return names


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def stored_series_lines(reserved: set[str]) -> Iterator[str]:
    """One line per stored series with its last value and time, grouped by metric under
    an `untyped` TYPE line (the store does not know what kind each metric is). A stored
    name equal to one of the system's own metrics is left out: a family may appear once."""
    current = None
    for name, labels, value, ts in iter_latest():
        if name in reserved:
            continue
        if name != current:
            current = name
            yield f"# TYPE {name} untyped\n"
        inner = ",".join(f'{key}="{_escape(str(labels[key]))}"' for key in sorted(labels))
        selector = f"{name}{{{inner}}}" if inner else name
        yield f"{selector} {floatToGoString(value)} {ts}\n"


def render_exposition() -> bytes:
    """The whole `/metrics` page."""
    from . import ingest  # noqa: F401  (registers its counters in REGISTRY: zeros until used)
    from .watchdog import exposition_families

    families = [*REGISTRY.collect(), *StorageCollector().collect(), *exposition_families()]
    own = generate_latest(_Families(families))
    stored = "".join(stored_series_lines(_reserved_names(families)))
    return own + stored.encode()


def _authorized(request: HttpRequest) -> HttpResponse | None:
    """None when the request may read /metrics, else the refusal. An API key comes as
    `Authorization: Bearer <key>` (what Prometheus's `authorization` block sends) or
    `X-API-Key`; a signed-in dashboard session also works."""
    if settings.MONITORING_METRICS_ANONYMOUS:
        return None
    try:
        authenticated = ApiKeyAuthentication().authenticate(request)
    except AuthenticationFailed as exc:
        return _refusal(401, str(exc.detail))
    user = authenticated[0] if authenticated else request.user
    if not user.is_authenticated:
        return _refusal(401, "Send an API key: Authorization: Bearer <key> or X-API-Key.")
    if not has_role(user, Role.VIEWER):
        return _refusal(403, "This needs the viewer role or higher.")
    return None


def _refusal(status: int, message: str) -> HttpResponse:
    response = HttpResponse(f"{message}\n", status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@require_http_methods(["GET", "HEAD"])
def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = _authorized(request)
    if refusal is not None:
        return refusal
    return HttpResponse(render_exposition(), content_type=CONTENT_TYPE)
