"""State of alerting: rules, alerts and their event history, silences, maintenance
windows and escalation policies."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from monitoring.promql import validate_expr

from .choices import OPEN_STATES, AlertState, Comparison, ScheduleKind, Severity


class EscalationPolicy(models.Model):
    """Ordered steps of who to notify while an alert stays unacknowledged."""

    name = models.CharField(max_length=200)
    key = models.SlugField(max_length=100, unique=True)
    severity = models.CharField(
        max_length=10,
        choices=Severity.choices,
        blank=True,
        default="",
        db_index=True,
        help_text="Applies to alerts of this severity whose rule names no policy.",
    )
    repeat = models.BooleanField(default=False, help_text="Start over after the last step.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "escalation policies"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EscalationStep(models.Model):
    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveIntegerField(default=0)
    after_minutes = models.PositiveIntegerField(default=0, help_text="Minutes after the alert fired.")
    channels = models.ManyToManyField("notifications.NotificationChannel", related_name="escalation_steps")

    class Meta:
        ordering = ["policy", "order"]
        constraints = [models.UniqueConstraint(fields=["policy", "order"], name="escalation_step_order_unique")]

    def __str__(self) -> str:
        return f"{self.policy}: step {self.order} after {self.after_minutes} min"


class AlertRuleQuerySet(models.QuerySet):
    def enabled(self):
        return self.filter(enabled=True)


class AlertRule(models.Model):
    name = models.CharField(max_length=200)
    key = models.SlugField(max_length=100, unique=True, help_text="The rule's key in the config file.")
    description = models.TextField(blank=True, default="")
    metric = models.CharField(max_length=200, db_index=True, help_text="Metric name (the config's metric_query).")
    matchers = models.JSONField(default=dict, blank=True, help_text='Exact label matches, e.g. {"env": "prod"}.')
    comparison = models.CharField(max_length=2, choices=Comparison.choices)
    threshold = models.FloatField()
    duration = models.PositiveIntegerField(default=0, help_text="Seconds the condition must hold before firing.")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM, db_index=True)
    channels = models.ManyToManyField("notifications.NotificationChannel", blank=True, related_name="rules")
    escalation_policy = models.ForeignKey(
        EscalationPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="rules"
    )
    resolve_after = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds the condition must stay false before a firing alert resolves."
    )
    evaluation_interval = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds between evaluations; empty uses the global interval."
    )
    expr = models.TextField(blank=True, default="", help_text="A PromQL expression used instead of metric/threshold.")
    labels = models.JSONField(default=dict, blank=True, help_text="Extra labels added to every alert.")
    enabled = models.BooleanField(default=True, db_index=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AlertRuleQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not isinstance(self.matchers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.matchers.items()
        ):
            raise ValidationError(
                {"matchers": 'Matchers must be an object of label names to strings, e.g. {"env": "prod"}.'}
            )
        if self.expr.strip():
            problem = validate_expr(self.expr)
            if problem:
                raise ValidationError({"expr": f"Not a usable alert expression: {problem}."})


class AlertQuerySet(models.QuerySet):
    def open(self):
        return self.filter(state__in=OPEN_STATES)

    def firing(self):
        return self.filter(state__in=(AlertState.ACTIVE, AlertState.ACKNOWLEDGED))


class Alert(models.Model):
    """One alert of one rule for one series (label set)."""

    rule = models.ForeignKey(AlertRule, on_delete=models.PROTECT, related_name="alerts")
    fingerprint = models.CharField(max_length=32, db_index=True, help_text="The series' label fingerprint.")
    labels = models.JSONField(default=dict)
    severity = models.CharField(max_length=10, choices=Severity.choices, db_index=True)
    state = models.CharField(max_length=20, choices=AlertState.choices, default=AlertState.PENDING, db_index=True)
    value = models.FloatField(null=True, blank=True)
    message = models.TextField(blank=True, default="")
    target = models.ForeignKey(
        "monitoring.MonitoringTarget", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    pending_since = models.DateTimeField(default=timezone.now, db_index=True)
    fired_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_true_at = models.DateTimeField(null=True, blank=True)
    false_since = models.DateTimeField(null=True, blank=True, help_text="For resolve_after: condition false since.")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_note = models.TextField(blank=True, default="")
    acknowledgement_expires_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    silenced = models.BooleanField(default=False, db_index=True)
    suppressed_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="suppressed_alerts",
        help_text="The parent target's alert that holds this one's notifications back.",
    )
    escalation_snapshot = models.JSONField(
        null=True, blank=True, help_text="The policy as it was when the alert fired."
    )
    escalation_step = models.PositiveIntegerField(default=0)
    next_escalation_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "fingerprint"],
                condition=Q(state__in=[s.value for s in OPEN_STATES]),
                name="one_open_alert_per_rule_series",
            )
        ]
        indexes = [models.Index(fields=["state", "severity"]), models.Index(fields=["rule", "state"])]
        permissions = [
            ("acknowledge_alert", "Can acknowledge alerts"),
            ("resolve_alert", "Can resolve alerts by hand"),
        ]

    def __str__(self) -> str:
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"{self.rule.name} {{{inner}}}" if inner else self.rule.name

    @property
    def is_firing(self) -> bool:
        return self.state in (AlertState.ACTIVE, AlertState.ACKNOWLEDGED)


class AlertEvent(models.Model):
    """One state change of an alert, by the engine or a person."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=20, choices=AlertState.choices, blank=True, default="")
    to_state = models.CharField(max_length=20, choices=AlertState.choices)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, default="engine", help_text="Who or what made the change.")
    value = models.FloatField(null=True, blank=True)
    note = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.alert_id}: {self.from_state or '-'} -> {self.to_state} by {self.actor_name}"


class Silence(models.Model):
    """Holds notifications back for a rule or for alerts whose labels match, until it ends."""

    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.CASCADE, related_name="silences")
    matchers = models.JSONField(
        default=list, blank=True, help_text='List of {"name", "op" (= != =~ !~), "value"}; all must match.'
    )
    starts_at = models.DateTimeField(default=timezone.now, db_index=True)
    ends_at = models.DateTimeField(db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    comment = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-starts_at"]

    def __str__(self) -> str:
        what = self.rule.name if self.rule_id else "matchers"
        return f"Silence of {what} until {self.ends_at:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        if self.ends_at and self.starts_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "A silence must end after it starts."})
        if not self.rule_id and not self.matchers:
            raise ValidationError("A silence needs a rule or at least one label matcher.")

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.starts_at <= now < self.ends_at


class MaintenanceWindow(models.Model):
    """A recurring silence: a weekly schedule or a cron expression, in a time zone."""

    name = models.CharField(max_length=200)
    matchers = models.JSONField(default=list, blank=True)
    targets = models.ManyToManyField("monitoring.MonitoringTarget", blank=True, related_name="maintenance_windows")
    schedule_kind = models.CharField(max_length=10, choices=ScheduleKind.choices, default=ScheduleKind.WEEKLY)
    weekdays = models.JSONField(default=list, blank=True, help_text="0=Monday … 6=Sunday, for weekly schedules.")
    start_time = models.TimeField(null=True, blank=True)
    cron = models.CharField(max_length=100, blank=True, default="")
    duration_minutes = models.PositiveIntegerField(default=60)
    time_zone = models.CharField(max_length=64, default="UTC")
    enabled = models.BooleanField(default=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
