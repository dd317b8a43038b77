"""REST API of alerting: alerts and their lifecycle actions, alert rules, silences. The
response shapes are the original design's contract (`{"success": true, "alerts": [...]}`),
spelled out by explicit output serializers."""

from .alerts import AlertSerializer, AlertViewSet
from .rules import AlertRuleSerializer, AlertRuleViewSet
from .silences import SilenceSerializer, SilenceViewSet

__all__ = [
    "AlertRuleSerializer",
    "AlertRuleViewSet",
    "AlertSerializer",
    "AlertViewSet",
    "SilenceSerializer",
    "SilenceViewSet",
]
