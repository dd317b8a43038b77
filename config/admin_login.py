"""The Django admin's log-in page with the dashboard's limits on failed attempts (per client
address and per account), so the most privileged log-in is not the one left unthrottled."""

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from dashboard.auth import RateLimitedLoginView


class AdminLoginView(RateLimitedLoginView):
    """What `admin.site.login` renders (its form, template and context), rate-limited."""

    authentication_form = AdminAuthenticationForm
    template_name = "admin/login.html"
    redirect_authenticated_user = False  # a logged-in user without staff rights may log in as another

    def dispatch(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        request.current_app = admin.site.name
        if request.method == "GET" and admin.site.has_permission(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=admin.site.name))
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: object) -> dict:
        context = super().get_context_data(**kwargs)
        request = self.request
        context.update(
            admin.site.each_context(request),
            title="Log in",
            subtitle=None,
            app_path=request.get_full_path(),
            username=request.user.get_username(),
        )
        if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
            context[REDIRECT_FIELD_NAME] = reverse("admin:index", current_app=admin.site.name)
        if context.get("throttle_message"):
            # The admin's template shows form errors, not the dashboard's throttle message;
            # the form is unbound (nothing was checked), so it has no cleaned data yet.
            form = context["form"]
            form.cleaned_data = {}
            form.add_error(None, context["throttle_message"])
        return context
