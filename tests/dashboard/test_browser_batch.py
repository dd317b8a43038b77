"""An alert storm in a real browser: the transitions of one evaluation reach the page as one
`batch` message, which the page unpacks: every new alert appears without a reload, under
one summary toast instead of one toast per alert."""

from django.utils import timezone
from playwright.sync_api import expect

from alerts.choices import AlertState
from alerts.evaluation import evaluate_rules
from alerts.models import Alert, AlertRule
from monitoring.ingest import SampleIn, ingest_samples
from tests.dashboard.test_browser import (  # noqa: F401  (fixtures, used by name)
    LIVE_TIMEOUT_MS,
    asgi_server,
    browser,
    in_thread,
    open_page,
    wait_live,
)

HOSTS = [f"storm-{n}" for n in range(6)]


def _fire_storm() -> list[Alert]:
    now = timezone.now()
    samples = [SampleIn("cpu_usage_percent", {"host": host}, 99.0, now.timestamp() - 1) for host in HOSTS]
    assert ingest_samples(samples, now=now).accepted == len(HOSTS)
    summary = evaluate_rules(now=now)
    assert summary.transitions == {"active": len(HOSTS)}
    return list(Alert.objects.filter(state=AlertState.ACTIVE))


def test_a_storm_arrives_as_one_batch_and_every_alert_shows(asgi_server, open_page) -> None:  # noqa: F811
    AlertRule.objects.create(
        name="High CPU", key="cpu-high", metric="cpu_usage_percent", comparison=">", threshold=80, severity="high"
    )
    page = open_page("viewer", "/alerts/")
    wait_live(page)
    page.evaluate("window.__notReloaded = true")
    page.evaluate(
        """() => { window.__frames = [];
        document.addEventListener("dashboard:event", (e) => window.__frames.push(e.detail.event)); }"""
    )

    alerts = in_thread(_fire_storm)

    for alert in alerts:
        expect(page.locator(f"#alert-{alert.pk}")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(page.locator(".toast")).to_contain_text(
        f"{len(HOSTS)} changes, {len(HOSTS)} firing", timeout=LIVE_TIMEOUT_MS
    )
    assert page.locator(".toast").count() == 1  # one summary, not one toast per alert
    # Each transition of the batch is still handed to the page's listeners as its own event.
    assert page.evaluate("window.__frames") == ["alert.transition"] * len(HOSTS)
    assert page.evaluate("window.__notReloaded")
    assert not page.csp_violations
