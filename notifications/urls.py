"""Routes of the notifications API, without trailing slashes as in the original design
(`/api/notifications`, `/api/notifications/test`)."""

from rest_framework.routers import SimpleRouter

from .api import NotificationViewSet
from .api_channels import ChannelViewSet

router = SimpleRouter(trailing_slash=False)
router.register("notifications", NotificationViewSet, basename="notifications-notification")
router.register("notification-channels", ChannelViewSet, basename="notifications-channel")

urlpatterns = router.urls
