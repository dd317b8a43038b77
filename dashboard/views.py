"""The dashboard's pages: thin shells that read through dashboard.queries and answer
through dashboard.pages.respond (page, live part, or JSON export)."""

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.db.models import Count, Window
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone

from alerts.choices import AlertState, Severity
from alerts.models import Alert
from healthchecks.choices import HealthStatus
from healthchecks.history import annotated_target_status
from monitoring.choices import AuditAction, AuditSource, Role
from monitoring.discovery.models import DiscoveredTarget
from monitoring.instant import epoch_ms
from monitoring.queries import SeriesSelector
from monitoring.roles import has_role
from monitoring.status import system_status

from . import queries
from .charts import DEFAULT_RANGE, RANGES, chart_data, clamp_width
from .forms import AlertNoteForm, SilenceForm
from .pages import SafeEncoder, page_view, respond, to_json

# Discovered targets awaiting approval listed on the Targets page; the rest are counted.
PENDING_SHOWN = 50


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@page_view
def overview(request: HttpRequest) -> HttpResponse:
    status = system_status()
    firing = queries.firing_by_severity()
    checks = queries.check_counts()
    targets = queries.target_counts()
    unhealthy = queries.unhealthy_checks()
    events = queries.latest_alert_events()
    context = {
        "status": status,
        "firing": firing,
        "severities": [(s.value, s.label, firing[s.value]) for s in reversed(Severity)],
        "checks": checks,
        "targets": targets,
        "unhealthy": unhealthy,
        "events": events,
        "live_groups": "alerts,health",
    }

    def export() -> dict:
        return {
            "status": status.as_dict(),
            "firing_alerts": firing,
            "health_checks": checks,
            "targets": targets,
            "unhealthy_checks": [_check_json(c) for c in unhealthy],
            "latest_events": [_event_json(e) for e in events],
        }

    return respond(request, "overview", context, export)


@page_view
def alerts(request: HttpRequest) -> HttpResponse:
    filters = queries.parse_alert_filters(request.GET)
    counts = queries.alert_tab_counts(filters)
    page = queries.paginate(queries.alert_list(filters), request.GET.get("page"))
    context = {
        "filters": filters,
        "counts": counts,
        "tabs": [(tab, tab.capitalize(), counts[tab]) for tab in queries.ALERT_TABS],
        "alerts": page,
        "rules": queries.rule_choices(),
        "severities": Severity.choices,
        "silence_form": SilenceForm(),
        "live_groups": "alerts",
    }
    return respond(
        request,
        "alerts",
        context,
        lambda: {
            "tab": filters.tab,
            "filters": filters.query(),
            "counts": counts,
            "total": page.paginator.count,
            "page": page.number,
            "alerts": [_alert_json(a) for a in page],
        },
    )


@page_view
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    try:
        alert, events, notifications = queries.alert_detail(alert_id)
    except Alert.DoesNotExist:
        raise Http404("No such alert.") from None
    start, end = queries.alert_chart_window(alert, timezone.now())
    chart_params = {
        "metric": alert.rule.metric,
        "label": [f"{k}:{v}" for k, v in queries.alert_series_labels(alert).items()],
        "start": int(start.timestamp()),
        "end": int(end.timestamp()),
    }
    context = {
        "alert": alert,
        "events": events,
        "notifications": notifications,
        "chart_url": f"{reverse('dashboard-metrics-data')}?{_query(chart_params)}",
        "marks_json": to_json([{"t": int(e.at.timestamp()), "label": e.get_to_state_display()} for e in events]),
        "note_form": AlertNoteForm(),
        "silence_form": SilenceForm(),
        "live_groups": "alerts",
    }
    return respond(
        request,
        "alert",
        context,
        lambda: {
            "alert": _alert_json(alert),
            "events": [_event_json(e) for e in events],
            "notifications": [_notification_json(n) for n in notifications],
        },
    )


@page_view
def metrics(request: HttpRequest) -> HttpResponse:
    names = queries.metric_names()
    metric = request.GET.get("metric") or ""
    if metric not in names:
        metric = names[0] if names else ""
    chosen = _label_params(request)
    range_name = request.GET.get("range", DEFAULT_RANGE)
    if range_name not in RANGES and range_name != "custom":
        range_name = DEFAULT_RANGE
    params = {"metric": metric, "label": [f"{k}:{v}" for k, v in chosen.items()], "range": range_name}
    if range_name == "custom":
        params["start"] = request.GET.get("start", "")
        params["end"] = request.GET.get("end", "")
    context = {
        "metric_names": names,
        "metric": metric,
        "labels": queries.label_choices(metric) if metric else {},
        "chosen": chosen,
        "ranges": [*RANGES, "custom"],
        "range": range_name,
        "start": request.GET.get("start", ""),
        "end": request.GET.get("end", ""),
        "chart_url": f"{reverse('dashboard-metrics-data')}?{_query(params)}",
        "metric_rules": queries.rules_on_metric(metric) if metric else [],
        "live_groups": "metrics,alerts",
    }

    def export() -> dict:
        start_ms, end_ms = _time_range(request)
        selector = SeriesSelector(metric=metric or None, labels=chosen)
        return chart_data(selector, start_ms=start_ms, end_ms=end_ms, width_px=clamp_width(request.GET.get("width")))

    return respond(request, "metrics", context, export)


@page_view
def metrics_data(request: HttpRequest) -> HttpResponse:
    """The chart data of the Metrics page and of an alert's chart: `metric`, repeated
    `label=name:value`, `range` or `start`/`end` (epoch seconds or ISO), `width` in pixels."""
    metric = request.GET.get("metric", "")
    if not metric:
        return JsonResponse({"error": "metric is required"}, status=400)
    try:
        start_ms, end_ms = _time_range(request)
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    selector = SeriesSelector(metric=metric, labels=_label_params(request))
    data = chart_data(selector, start_ms=start_ms, end_ms=end_ms, width_px=clamp_width(request.GET.get("width")))
    return JsonResponse(data, encoder=SafeEncoder)


@page_view
def health(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    status = status if status in HealthStatus.values else ""
    target = request.GET.get("target", "").strip()[:100]
    page = queries.paginate(queries.health_checks(status, target), request.GET.get("page"))
    times = queries.response_times([c.pk for c in page])
    rows = [(c, queries.sparkline_points(times[c.pk]), times[c.pk]) for c in page]
    counts = queries.check_counts()
    context = {
        "checks": page,
        "rows": rows,
        "counts": counts,
        "statuses": HealthStatus.choices,
        "status": status,
        "target": target,
        "live_groups": "health",
    }
    return respond(
        request,
        "health",
        context,
        lambda: {
            "filters": {"status": status, "target": target},
            "counts": counts,
            "total": page.paginator.count,
            "page": page.number,
            "checks": [{**_check_json(c), "response_times": t} for c, _, t in rows],
        },
    )


@page_view
def targets(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    query = request.GET.get("q", "").strip()[:100]
    page = queries.paginate(queries.targets_page_rows(status, query), request.GET.get("page"))
    ids = [t.pk for t in page]
    now = timezone.now()
    up_24h = queries.uptime_of_targets(ids, now=now, hours=24)
    up_7d = queries.uptime_of_targets(ids, now=now, hours=24 * 7)
    children = queries.children_of(ids)
    rows = [
        {
            "target": t,
            "status": annotated_target_status(t),
            "uptime_24h": up_24h.get(t.pk),
            "uptime_7d": up_7d.get(t.pk),
            "children": children[t.pk],
        }
        for t in page
    ]
    pending, pending_total = _pending_discoveries()
    context = {
        "targets": page,
        "rows": rows,
        "status": status,
        "q": query,
        "pending": pending,
        "pending_total": pending_total,
        "can_approve": request.role == Role.ADMIN,
        "live_groups": "health,alerts",
    }
    return respond(
        request,
        "targets",
        context,
        lambda: {
            "filters": {"status": status, "q": query},
            "total": page.paginator.count,
            "page": page.number,
            "pending_discovered_total": pending_total,
            "pending_discovered": [_discovered_json(d) for d in pending],
            "targets": [
                {
                    "slug": r["target"].slug,
                    "name": r["target"].name,
                    "kind": r["target"].kind,
                    "enabled": r["target"].enabled,
                    "health": r["status"],
                    "checks": r["target"].checks_total,
                    "uptime_24h": r["uptime_24h"],
                    "uptime_7d": r["uptime_7d"],
                    "parent": r["target"].parent.slug if r["target"].parent_id else None,
                    "children": [slug for slug, _ in r["children"]],
                }
                for r in rows
            ],
        },
    )


def _pending_discoveries() -> tuple[list[DiscoveredTarget], int]:
    """The discovered targets awaiting approval, newest first, at most PENDING_SHOWN, and
    how many wait in all, in one query (the window count is taken before the LIMIT)."""
    rows = list(
        DiscoveredTarget.objects.pending()
        .annotate(pending_total=Window(Count("id")))
        .order_by("-first_seen_at", "-id")[:PENDING_SHOWN]
    )
    return rows, rows[0].pending_total if rows else 0


def _discovered_json(row: DiscoveredTarget) -> dict:
    return {
        "id": row.pk,
        "identity": row.identity,
        "source": row.source,
        "kind": row.kind,
        "name": row.name,
        "endpoint": row.endpoint,
        "labels": row.labels,
        "parent_ref": row.parent_ref,
        "first_seen_at": _iso(row.first_seen_at),
        "last_seen_at": _iso(row.last_seen_at),
    }


@page_view
def logs(request: HttpRequest) -> HttpResponse:
    # The audit log is for admins, as in the admin and the API; alert events for everyone.
    can_audit = has_role(request.user, Role.ADMIN)
    tab = request.GET.get("tab", "audit" if can_audit else "events")
    if tab != "events" and not can_audit:
        tab = "events"
    g = request.GET
    if tab == "audit":
        filters = {k: g.get(k, "").strip()[:100] for k in ("actor", "source", "action", "object_type")}
        page = queries.paginate(queries.audit_entries(**filters), g.get("page"), per_page=100)
    else:
        rule = g.get("rule", "")
        filters = {"state": g.get("state", ""), "rule": rule, "actor": g.get("actor", "").strip()[:100]}
        page = queries.paginate(
            queries.alert_events(state=filters["state"], rule=int(rule) if rule.isdigit() else None,
                                 actor=filters["actor"]),
            g.get("page"),
            per_page=100,
        )  # fmt: skip
    context = {
        "tab": tab,
        "can_audit": can_audit,
        "filters": filters,
        "entries": page,
        "sources": AuditSource.choices,
        "actions": AuditAction.choices,
        "states": AlertState.choices,
        "rules": queries.rule_choices() if tab == "events" else [],
        "live_groups": "alerts",
    }

    def export() -> dict:
        if tab == "audit":
            items = [
                {
                    "at": _iso(e.at),
                    "actor": e.actor_name,
                    "source": e.source,
                    "action": e.action,
                    "object_type": e.object_type,
                    "object_id": e.object_id,
                    "object": e.object_repr,
                    "before": e.before,
                    "after": e.after,
                    "api_key_name": e.api_key_name,
                    "ip": e.ip,
                }
                for e in page
            ]
        else:
            items = [_event_json(e) for e in page]
        return {"tab": tab, "filters": filters, "total": page.paginator.count, "page": page.number, "entries": items}

    return respond(request, "logs", context, export)


# --- helpers ------------------------------------------------------------------------------------


def _query(params: dict) -> str:
    return urlencode(params, doseq=True)


def _label_params(request: HttpRequest) -> dict[str, str]:
    labels = {}
    for raw in request.GET.getlist("label"):
        name, sep, value = raw.partition(":")
        if sep and name and value:
            labels[name.strip()] = value.strip()
    return labels


def _parse_time(raw: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(raw), tz=UTC)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(raw)
    return parsed if parsed.tzinfo else timezone.make_aware(parsed)


def _time_range(request: HttpRequest) -> tuple[int, int]:
    """(start, end) in epoch ms from `start`/`end` when both are given, else the named
    `range` ending now. Raises ValueError for times that cannot be read or are reversed."""
    g = request.GET
    if g.get("start") and g.get("end"):
        try:
            start, end = _parse_time(g["start"]), _parse_time(g["end"])
        except (ValueError, OverflowError, OSError):
            raise ValueError("start and end are epoch seconds or ISO 8601 times") from None
        if end <= start:
            raise ValueError("end must be after start")
        if end - start > timedelta(days=31):
            raise ValueError("a custom range spans at most 31 days")
        return epoch_ms(start), epoch_ms(end)
    now = timezone.now()
    seconds = RANGES.get(g.get("range", DEFAULT_RANGE), RANGES[DEFAULT_RANGE])
    return epoch_ms(now - timedelta(seconds=seconds)), epoch_ms(now)


def _alert_json(alert: Alert) -> dict:
    return {
        "id": alert.pk,
        "rule": alert.rule.key,
        "rule_name": alert.rule.name,
        "metric": alert.rule.metric,
        "comparison": alert.rule.comparison,
        "threshold": alert.rule.threshold,
        "state": alert.state,
        "severity": alert.severity,
        "labels": alert.labels,
        "value": alert.value,
        "message": alert.message,
        "target": alert.target.slug if alert.target_id else alert.labels.get("target"),
        "silenced": alert.silenced,
        "suppressed_by": alert.suppressed_by_id,
        "pending_since": _iso(alert.pending_since),
        "fired_at": _iso(alert.fired_at),
        "acknowledged_at": _iso(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by_id else None,
        "resolved_at": _iso(alert.resolved_at),
        "resolved_by": alert.resolved_by.get_username() if alert.resolved_by_id else None,
    }


def _event_json(event) -> dict:
    return {
        "alert": event.alert_id,
        "rule": event.alert.rule.key,
        "from": event.from_state,
        "to": event.to_state,
        "at": _iso(event.at),
        "actor": event.actor_name,
        "value": event.value,
        "note": event.note,
    }


def _notification_json(notification) -> dict:
    return {
        "channel": notification.channel.key,
        "event": notification.event,
        "status": notification.status,
        "attempts": notification.attempts,
        "created_at": _iso(notification.created_at),
        "sent_at": _iso(notification.sent_at),
        "last_error": notification.last_error,
        "suppressed_reason": notification.suppressed_reason,
    }


def _check_json(check) -> dict:
    result = check.last_result
    return {
        "id": check.pk,
        "key": check.key,
        "name": check.name,
        "kind": check.kind,
        "enabled": check.enabled,
        "status": check.status,
        "target": check.target.slug if check.target_id else None,
        "last_checked_at": _iso(check.last_checked_at),
        "last_result": None
        if result is None
        else {"status": result.status, "message": result.message, "response_time": result.response_time},
    }
