"""Helpers of the notification tests: an injected clock and firing an alert through the
alert history, as the engine does."""

import itertools
import threading
from datetime import UTC, datetime, timedelta

from django.db import transaction

from alerts.choices import AlertState
from alerts.history import record_event
from alerts.models import Alert, AlertRule

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class FakeClock:
    """The clock the outbox is given: `sleep` advances it at once."""

    def __init__(self, start: datetime = T0) -> None:
        self.current = start
        self.lock = threading.Lock()

    def now(self) -> datetime:
        with self.lock:
            return self.current

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> datetime:
        with self.lock:
            self.current += timedelta(seconds=seconds)
            return self.current


_keys = itertools.count(1)


def fire(rule: AlertRule, now: datetime, labels: dict | None = None, value: float = 95.0) -> Alert:
    """Open a firing alert of `rule` through the alert history (as the engine's duration-0
    transition does): its notifications are queued in the same transaction."""
    labels = labels if labels is not None else {"host": f"web-{next(_keys)}"}
    with transaction.atomic():
        alert = Alert.objects.create(
            rule=rule,
            fingerprint=f"fp{next(_keys)}",
            labels=labels,
            severity=rule.severity,
            state=AlertState.ACTIVE,
            value=value,
            message=f"{rule.name}: value {value:g}",
            pending_since=now,
            fired_at=now,
            last_true_at=now,
            created_at=now,
        )
        record_event(alert=alert, from_state="", to_state=AlertState.ACTIVE, at=now, value=value)
    alert.refresh_from_db()
    return alert
