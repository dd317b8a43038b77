"""The one place that writes an alert's history and fans a transition out to the rest of
the system. Call both inside the transaction that changes the alert."""

from datetime import datetime

from django.contrib.auth.models import User

from dashboard.batch import publish_after_commit
from dashboard.publish import GROUP_ALERTS

from .choices import AlertState
from .models import Alert, AlertEvent


def record_event(
    *,
    alert: Alert,
    from_state: AlertState | str,
    to_state: AlertState | str,
    at: datetime,
    actor: User | None = None,
    actor_name: str = "engine",
    value: float | None = None,
    note: str = "",
) -> AlertEvent:
    """Write one AlertEvent and schedule what follows a transition once it commits."""
    event = AlertEvent.objects.create(
        alert=alert,
        from_state=from_state or "",
        to_state=to_state,
        at=at,
        actor=actor,
        actor_name=actor.get_username() if actor is not None and actor_name == "engine" else actor_name,
        value=value,
        note=note,
    )
    after_transition(alert=alert, event=event)
    return event


def after_transition(*, alert: Alert, event: AlertEvent) -> None:
    """What every transition causes, registered inside the transaction: the notification
    outbox rows (written now, in the same transaction; delivered after commit) and the
    live update (after commit, in one message with the transaction's other transitions)."""
    # Imported here: the notifications app imports the alerts models.
    from notifications.services import notify_transition

    notify_transition(alert=alert, event=event)
    payload = {
        "id": alert.pk,
        "rule": alert.rule_id,
        "state": str(event.to_state),
        "from": str(event.from_state),
        "severity": alert.severity,
        "labels": alert.labels,
        "value": event.value,
        "at": event.at.isoformat(),
    }
    publish_after_commit(GROUP_ALERTS, "alert.transition", payload)
