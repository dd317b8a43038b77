"""The admin's rule preview in a real browser: the "Preview the form as edited" button posts
the form as it is on screen (htmx), on the change page and on the add page, and shows the
replay of the unsaved rule without saving anything."""

from django.utils import timezone
from playwright.sync_api import expect

from alerts.models import AlertRule
from tests.dashboard.conftest import _role_groups_in_transactional_tests  # noqa: F401  (autouse fixture)
from tests.dashboard.test_browser import asgi_server, browser, open_page  # noqa: F401  (fixtures)

MINUTE_MS = 60_000


def store_history(make_series) -> None:
    """gw-1 runs hot (95) for two 10-minute spells of the last 3 hours; gw-2 never (40)."""
    now_ms = int(timezone.now().timestamp() * 1000) // MINUTE_MS * MINUTE_MS
    start = now_ms - 180 * MINUTE_MS
    hot = [(start + m * MINUTE_MS, 95.0 if 30 <= m < 40 or 100 <= m < 110 else 50.0) for m in range(180)]
    make_series("temperature", {"host": "gw-1"}, hot)
    make_series("temperature", {"host": "gw-2"}, [(start + m * MINUTE_MS, 40.0) for m in range(180)])


def test_preview_button_replays_the_change_form_as_edited(asgi_server, open_page, make_series) -> None:  # noqa: F811
    store_history(make_series)
    rule = AlertRule.objects.create(
        name="Hot", key="hot", metric="temperature", comparison=">", threshold=80, evaluation_interval=60
    )
    page = open_page("admin", f"/admin/alerts/alertrule/{rule.pk}/change/")
    preview = page.locator("#rule-preview")

    page.get_by_role("button", name="Preview the form as edited").click()
    expect(preview).to_contain_text("2 time(s), on 1 of 2 series", timeout=30_000)
    expect(preview.locator("table tbody tr")).to_have_count(4)

    page.fill("#id_threshold", "99")
    page.select_option("select[name=preview_hours]", "6")
    page.get_by_role("button", name="Preview the form as edited").click()
    expect(preview).to_contain_text("Never, on 2 series", timeout=30_000)
    expect(preview).to_contain_text("over the last 6 hours")

    page.fill("#id_threshold", "")
    page.get_by_role("button", name="Preview the form as edited").click()
    expect(preview.locator(".errorlist")).to_contain_text("Threshold: This field is required.", timeout=30_000)
    rule.refresh_from_db()
    assert rule.threshold == 80  # nothing was saved


def test_preview_button_works_on_the_add_page(asgi_server, open_page, make_series) -> None:  # noqa: F811
    store_history(make_series)
    page = open_page("admin", "/admin/alerts/alertrule/add/")
    page.fill("#id_name", "Hot gateways")
    page.fill("#id_key", "hot-gateways")
    page.fill("#id_expr", 'temperature{host="gw-1"} > 90')
    page.select_option("#id_comparison", ">")
    page.fill("#id_threshold", "0")

    page.get_by_role("button", name="Preview the form as edited").click()

    expect(page.locator("#rule-preview")).to_contain_text("2 time(s), on 1 of 1 series", timeout=30_000)
    assert not AlertRule.objects.exists()
