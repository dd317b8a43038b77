"""Routes of the alerting API, without trailing slashes as in the original design
(`/api/alerts`, `/api/alerts/7/acknowledge`)."""

from rest_framework.routers import SimpleRouter

from .api import AlertRuleViewSet, AlertViewSet, SilenceViewSet
from .api.escalation import EscalationPolicyViewSet

router = SimpleRouter(trailing_slash=False)
router.register("alerts", AlertViewSet, basename="alerts-alert")
router.register("alert-rules", AlertRuleViewSet, basename="alerts-rule")
router.register("silences", SilenceViewSet, basename="alerts-silence")
router.register("escalation-policies", EscalationPolicyViewSet, basename="alerts-escalation-policy")

urlpatterns = router.urls
