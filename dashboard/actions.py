"""What operators do from the dashboard: acknowledge, resolve and silence alerts, run a
health check now; and what admins do: approve or reject a discovered target. Each goes
through its app's service with audit source `dashboard`.

Answers: an htmx request gets a short text (the page shows it and refreshes its live
part); a plain form post is redirected back with a message."""

from collections.abc import Callable
from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from alerts.lifecycle import AlertStateError, acknowledge_alert, resolve_alert
from alerts.models import Alert
from alerts.silencing import SilenceError, create_silence, silence_rule
from healthchecks.models import HealthCheck
from healthchecks.services import run_checks_now
from monitoring.audit import audit_request, client_ip
from monitoring.choices import AuditAction, AuditSource
from monitoring.discovery.models import DiscoveredTarget
from monitoring.discovery.services import DiscoveryError, approve_discovered, reject_discovered

from .forms import AlertNoteForm, SilenceForm
from .pages import admin_action, operator_action
from .queries import alert_series_labels


def _answer(request: HttpRequest, text: str, status: int = 200, fallback: str = "dashboard-alerts") -> HttpResponse:
    if request.headers.get("HX-Request"):
        return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
    (messages.success if status < 400 else messages.error)(request, text)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False):
        target = reverse(fallback)
    return HttpResponseRedirect(target)


@operator_action
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    return _act_on_alert(request, alert_id, acknowledge_alert, "acknowledged")


@operator_action
def alert_resolve(request: HttpRequest, alert_id: int) -> HttpResponse:
    return _act_on_alert(request, alert_id, resolve_alert, "resolved")


def _act_on_alert(request: HttpRequest, alert_id: int, service: Callable[..., Alert], done: str) -> HttpResponse:
    """Acknowledge or resolve (`service`) with the posted note; `done` words the answer."""
    form = AlertNoteForm(request.POST)
    if not form.is_valid():
        return _answer(request, "The note is too long.", 400)
    try:
        service(
            alert_id=alert_id,
            user=request.user,
            note=form.cleaned_data["note"],
            source=AuditSource.DASHBOARD,
            now=timezone.now(),
            ip=client_ip(request),
        )
    except Alert.DoesNotExist:
        return _answer(request, f"There is no alert {alert_id}.", 404)
    except AlertStateError as exc:
        return _answer(request, str(exc).capitalize() + ".", 409)
    return _answer(request, f"Alert {alert_id} {done}.")


@operator_action
def alert_silence(request: HttpRequest, alert_id: int) -> HttpResponse:
    """Silence the alert's own series (its rule and its series labels) or the whole rule."""
    form = SilenceForm(request.POST)
    if not form.is_valid():
        return _answer(request, "Choose a duration and what to silence.", 400)
    alert = Alert.objects.select_related("rule").filter(pk=alert_id).first()
    if alert is None:
        return _answer(request, f"There is no alert {alert_id}.", 404)
    hours, comment, now = form.cleaned_data["hours"], form.cleaned_data["comment"], timezone.now()
    try:
        if form.cleaned_data["scope"] == "rule":
            silence_rule(
                rule_id=alert.rule_id,
                duration_hours=hours,
                user=request.user,
                comment=comment,
                source=AuditSource.DASHBOARD,
                now=now,
                ip=client_ip(request),
            )
            what = f"every alert of {alert.rule.name}"
        else:
            create_silence(
                user=request.user,
                rule_id=alert.rule_id,
                matchers=[{"name": k, "op": "=", "value": v} for k, v in sorted(alert_series_labels(alert).items())],
                starts_at=now,
                ends_at=now + timedelta(hours=hours),
                comment=comment or f"Silenced from the dashboard (alert {alert.pk})",
                source=AuditSource.DASHBOARD,
                now=now,
                ip=client_ip(request),
            )
            what = f"alert {alert.pk}"
    except SilenceError as exc:
        return _answer(request, str(exc), 400)
    return _answer(request, f"Silenced {what} for {hours} h.")


@operator_action
def check_run(request: HttpRequest, check_id: int) -> HttpResponse:
    """Run one check now: in the request when its timeout allows, else on a worker."""
    check = HealthCheck.objects.filter(pk=check_id).first()
    if check is None:
        return _answer(request, f"There is no health check {check_id}.", 404, "dashboard-health")
    audit_request(
        request,
        source=AuditSource.DASHBOARD,
        action=AuditAction.RUN,
        obj=check,
        after={"check_ids": [check.pk]},
    )
    report = run_checks_now(check_ids=[check.pk], now=timezone.now())
    if report.results:
        result = report.results[0]
        text = f"{check.name}: {result.get_status_display()}" + (f" ({result.message})" if result.message else "")
    elif report.queued:
        text = f"{check.name}: queued on a worker (its timeout is longer than a page can wait)."
    else:
        text = f"{check.name}: not run, {report.skipped.get(check.pk, 'skipped')}."
        return _answer(request, text, 409, "dashboard-health")
    return _answer(request, text, fallback="dashboard-health")


@admin_action
def discovered_approve(request: HttpRequest, discovered_id: int) -> HttpResponse:
    """Approve a discovered target: it becomes a target with its default health checks."""
    row = DiscoveredTarget.objects.filter(pk=discovered_id).first()
    if row is None:
        return _answer(request, f"There is no discovered target {discovered_id}.", 404, "dashboard-targets")
    try:
        target = approve_discovered(
            discovered=row, actor=request.user, source=AuditSource.DASHBOARD, ip=client_ip(request)
        )
    except DiscoveryError as exc:
        return _answer(request, f"{row.name} was not approved: {exc}.", 409, "dashboard-targets")
    except ValidationError as exc:  # what was found does not make a valid target (MonitoringTarget.full_clean)
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        return _answer(request, f"{row.name} was not approved: {problems}.", 400, "dashboard-targets")
    return _answer(request, f"{row.name} approved as target {target.slug}.", fallback="dashboard-targets")


@admin_action
def discovered_reject(request: HttpRequest, discovered_id: int) -> HttpResponse:
    """Reject a discovered target: it is not proposed again."""
    row = DiscoveredTarget.objects.filter(pk=discovered_id).first()
    if row is None:
        return _answer(request, f"There is no discovered target {discovered_id}.", 404, "dashboard-targets")
    try:
        reject_discovered(discovered=row, actor=request.user, source=AuditSource.DASHBOARD, ip=client_ip(request))
    except DiscoveryError as exc:
        return _answer(request, f"{row.name} was not rejected: {exc}.", 409, "dashboard-targets")
    return _answer(request, f"{row.name} rejected; it will not be proposed again.", fallback="dashboard-targets")
