"""What people do to alerts (acknowledge, resolve) and to rules (enable, disable), with
the transitions each state allows, their AlertEvent history and audit entries."""

from collections.abc import Callable, Iterable
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q, QuerySet

from monitoring.audit import record_audit
from monitoring.choices import AuditAction, AuditSource

from .choices import FIRING_STATES, OPEN_STATES, AlertState
from .history import record_event
from .models import Alert, AlertRule

# The `status` filter of `GET /api/alerts` and `manage.py alerts list`: the states, plus
# names for groups of them and for the flags that are not states.
STATUS_FILTERS: dict[str, Q] = {
    **{state.value: Q(state=state) for state in AlertState},
    "firing": Q(state__in=FIRING_STATES),
    "open": Q(state__in=OPEN_STATES),
    "silenced": Q(state__in=OPEN_STATES, silenced=True),
    "suppressed": Q(state__in=OPEN_STATES, suppressed_by__isnull=False),
}


class AlertStateError(Exception):
    """An action that the alert's (or rule's) current state does not allow."""


def filter_by_status(alerts: QuerySet, statuses: Iterable[str]) -> QuerySet:
    """Alerts in any of `statuses` (names from STATUS_FILTERS). Raises ValueError naming an
    unknown one."""
    condition = Q(pk__in=[])
    for status in statuses:
        if status not in STATUS_FILTERS:
            raise ValueError(f"Unknown status {status!r}; use one of {', '.join(STATUS_FILTERS)}.")
        condition |= STATUS_FILTERS[status]
    return alerts.filter(condition)


def _snapshot(alert: Alert) -> dict:
    return {
        "state": alert.state,
        "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by_id else None,
        "acknowledged_at": alert.acknowledged_at,
        "acknowledgement_expires_at": alert.acknowledgement_expires_at,
        "resolved_by": alert.resolved_by.get_username() if alert.resolved_by_id else None,
        "resolved_at": alert.resolved_at,
    }


def _refusal(alert: Alert, action: str) -> AlertStateError:
    if alert.state == AlertState.ACKNOWLEDGED and action == "acknowledged":
        who = alert.acknowledged_by.get_username() if alert.acknowledged_by_id else "someone"
        return AlertStateError(f"alert {alert.pk} is already acknowledged by {who}")
    state = AlertState(alert.state).value
    if alert.state == AlertState.INACTIVE:
        state = "inactive (it cleared before it fired)"
    return AlertStateError(f"alert {alert.pk} is {state}; only firing alerts can be {action}")


def acknowledge_alert(
    *,
    alert_id: int,
    user: User | None,
    note: str = "",
    expires_at: datetime | None = None,
    source: AuditSource | str,
    now: datetime,
    actor_name: str = "",
    api_key_name: str = "",
    ip: str | None = None,
) -> Alert:
    """Acknowledge a firing alert: it keeps firing (and resolves when its condition clears)
    but escalation stops. With `expires_at`, it returns to firing then unless resolved
    first (see expire_acknowledgements). Only an `active` alert can be acknowledged.

    Raises Alert.DoesNotExist, AlertStateError, or ValueError for an expiry in the past."""
    if expires_at is not None and expires_at <= now:
        raise ValueError("The acknowledgement must expire in the future.")

    def acknowledge(alert: Alert) -> list[str]:
        alert.acknowledged_at = now
        alert.acknowledged_by = user
        alert.acknowledged_note = note
        alert.acknowledgement_expires_at = expires_at
        return ["acknowledged_at", "acknowledged_by", "acknowledged_note", "acknowledgement_expires_at"]

    return _move_by_hand(
        alert_id=alert_id,
        allowed=(AlertState.ACTIVE,),
        to_state=AlertState.ACKNOWLEDGED,
        done="acknowledged",
        change=acknowledge,
        audit_action=AuditAction.ACKNOWLEDGE,
        user=user,
        note=note,
        source=source,
        now=now,
        actor_name=actor_name,
        api_key_name=api_key_name,
        ip=ip,
    )


def resolve_alert(
    *,
    alert_id: int,
    user: User | None,
    note: str = "",
    source: AuditSource | str,
    now: datetime,
    actor_name: str = "",
    api_key_name: str = "",
    ip: str | None = None,
) -> Alert:
    """Resolve a firing (active or acknowledged) alert by hand. If its condition still
    holds, the next evaluation starts a new pending alert. A pending alert cannot be
    resolved: it has not fired, and closing it would only restart its `for` timer.

    Raises Alert.DoesNotExist or AlertStateError."""

    def resolve(alert: Alert) -> list[str]:
        alert.resolved_at = now
        alert.resolved_by = user
        alert.acknowledgement_expires_at = None
        return ["resolved_at", "resolved_by", "acknowledgement_expires_at"]

    return _move_by_hand(
        alert_id=alert_id,
        allowed=FIRING_STATES,
        to_state=AlertState.RESOLVED,
        done="resolved",
        change=resolve,
        audit_action=AuditAction.RESOLVE,
        user=user,
        note=note,
        source=source,
        now=now,
        actor_name=actor_name,
        api_key_name=api_key_name,
        ip=ip,
    )


def _move_by_hand(
    *,
    alert_id: int,
    allowed: tuple[AlertState, ...],
    to_state: AlertState,
    done: str,
    change: Callable[[Alert], list[str]],
    audit_action: AuditAction,
    user: User | None,
    note: str,
    source: AuditSource | str,
    now: datetime,
    actor_name: str,
    api_key_name: str,
    ip: str | None,
) -> Alert:
    """What acknowledging and resolving share: under the alert's row lock, refuse a state
    not in `allowed` (AlertStateError saying it cannot be `done`), move it to `to_state`
    with `change` (which sets the fields of the move and names them), and write its event
    and audit entry, all in one transaction."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert_id)
        if alert.state not in allowed:
            raise _refusal(alert, done)
        before = _snapshot(alert)
        alert.state = to_state
        alert.save(update_fields=["state", *change(alert), "updated_at"])
        record_event(
            alert=alert,
            from_state=before["state"],
            to_state=to_state,
            at=now,
            actor=user,
            actor_name=actor_name or "engine",
            value=alert.value,
            note=note,
        )
        record_audit(
            actor=user,
            source=source,
            action=audit_action,
            obj=alert,
            before=before,
            after={**_snapshot(alert), "note": note, f"{done}_as": actor_name or None},
            api_key_name=api_key_name,
            ip=ip,
            at=now,
        )
    return alert


def expire_acknowledgements(now: datetime) -> list[int]:
    """Return acknowledged alerts whose acknowledgement has expired to `active`, so that
    escalation resumes. Safe to run from several workers at once: each alert is re-read
    under its row lock. Returns the ids of the alerts that went back to firing."""
    due = list(
        Alert.objects.filter(state=AlertState.ACKNOWLEDGED, acknowledgement_expires_at__lte=now).values_list(
            "pk", flat=True
        )
    )
    returned = []
    for alert_id in due:
        with transaction.atomic():
            alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
            # Another worker, the engine or a person may have moved it meanwhile.
            if (
                alert is None
                or alert.state != AlertState.ACKNOWLEDGED
                or alert.acknowledgement_expires_at is None
                or alert.acknowledgement_expires_at > now
            ):
                continue
            alert.state = AlertState.ACTIVE
            alert.acknowledgement_expires_at = None
            alert.save(update_fields=["state", "acknowledgement_expires_at", "updated_at"])
            record_event(
                alert=alert,
                from_state=AlertState.ACKNOWLEDGED,
                to_state=AlertState.ACTIVE,
                at=now,
                actor_name="acknowledgement expiry",
                value=alert.value,
                note="The acknowledgement expired while the alert still fires.",
            )
            returned.append(alert.pk)
    return returned


def set_rule_enabled(
    *,
    rule_id: int,
    enabled: bool,
    user: User | None,
    source: AuditSource | str,
    now: datetime,
    api_key_name: str = "",
    ip: str | None = None,
) -> AlertRule:
    """Enable or disable a rule. Disabling closes its open alerts, since a rule that is no
    longer evaluated would leave them open forever (Prometheus likewise drops the alerts
    of a removed rule): firing ones are resolved, pending ones dropped, each with an event.
    Enabling or disabling a rule already in that state changes nothing and audits nothing.

    Raises AlertRule.DoesNotExist."""
    with transaction.atomic():
        rule = AlertRule.objects.select_for_update().get(pk=rule_id)
        if rule.enabled == enabled:
            return rule
        rule.enabled = enabled
        rule.save(update_fields=["enabled", "updated_at"])
        closed = 0
        if not enabled:
            closed = _close_alerts_of_disabled_rule(rule=rule, user=user, now=now)
        record_audit(
            actor=user,
            source=source,
            action=AuditAction.ENABLE if enabled else AuditAction.DISABLE,
            obj=rule,
            before={"enabled": not enabled},
            after={"enabled": enabled, "alerts_closed": closed},
            api_key_name=api_key_name,
            ip=ip,
            at=now,
        )
    return rule


def _close_alerts_of_disabled_rule(*, rule: AlertRule, user: User | None, now: datetime) -> int:
    alerts = list(Alert.objects.select_for_update().filter(rule=rule, state__in=OPEN_STATES))
    for alert in alerts:
        from_state = alert.state
        if alert.state in FIRING_STATES:
            alert.state = AlertState.RESOLVED
            alert.resolved_at = now
            alert.resolved_by = user
        else:
            alert.state = AlertState.INACTIVE
        alert.acknowledgement_expires_at = None
        alert.save(update_fields=["state", "resolved_at", "resolved_by", "acknowledgement_expires_at", "updated_at"])
        record_event(
            alert=alert,
            from_state=from_state,
            to_state=alert.state,
            at=now,
            actor=user,
            value=alert.value,
            note="The rule was disabled.",
        )
    return len(alerts)
