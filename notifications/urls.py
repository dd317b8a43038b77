"""Routes of the notifications API, without trailing slashes as in the original design
(`/api/notifications`, `/api/notifications/test`)."""

from rest_framework.routers import SimpleRouter

from .api import NotificationViewSet

router = SimpleRouter(trailing_slash=False)
router.register("notifications", NotificationViewSet, basename="notifications-notification")

urlpatterns = router.urls
