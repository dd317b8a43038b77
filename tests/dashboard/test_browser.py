"""The dashboard in a real browser (Debian's Chromium through Playwright) against a live
ASGI server: log-ins by role, an alert fired by ingestion appearing without a reload,
acknowledging it seen by a second browser, refused forged posts, the metrics chart with
its threshold line, reconnection with re-sync, and a screenshot of every page."""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from alerts.choices import AlertState
from alerts.evaluation import evaluate_rules
from alerts.models import Alert, AlertRule
from monitoring.ingest import SampleIn, ingest_samples
from tests.dashboard.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LiveServer, log_in, shared_database_url
from tests.dashboard.conftest import build_fleet

# The product's target is 1 s; on a loaded shared machine the assertion allows 5 s and
# benchmarks/bench_dashboard.py measures the real latency.
LIVE_TIMEOUT_MS = 5_000
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an event loop in this thread; the ORM calls of the test
    # body are still plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def asgi_server(transactional_db, users, tmp_path):
    for url in _database_url(tmp_path):
        server = LiveServer(url, tmp_path / "daphne.log")
        server.start()
        try:
            yield server
        finally:
            server.stop()


def _database_url(tmp_path):
    yield from shared_database_url(tmp_path)


@pytest.fixture
def open_page(browser, asgi_server):
    """A logged-in page of a fresh browser context (its own cookies: another browser)."""
    contexts = []

    def make(username: str, path: str = "/", viewport: dict = WIDE, color_scheme: str = "light"):
        context = browser.new_context(viewport=viewport, color_scheme=color_scheme)
        contexts.append(context)
        page = context.new_page()
        page.csp_violations = []
        page.on(
            "console",
            lambda msg: page.csp_violations.append(msg.text) if "Content Security Policy" in msg.text else None,
        )
        log_in(page, asgi_server.url, username)
        if path != "/":
            page.goto(asgi_server.url + path)
        return page

    yield make
    for context in contexts:
        context.close()


def wait_live(page) -> None:
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=30_000)


def in_thread(work, *args):
    """Run `work` in a thread of its own: Playwright's event loop lives in this one, and
    publishing (async_to_sync) refuses to run beside a running loop, as in any sync code."""

    def run():
        try:
            return work(*args)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result(timeout=60)


def fire_alert(host: str, value: float = 97.0) -> Alert:
    """Ingest a sample over the rule's threshold and evaluate, as the on-ingest path does."""
    return in_thread(_fire_alert, host, value)


def _fire_alert(host: str, value: float) -> Alert:
    now = timezone.now()
    result = ingest_samples([SampleIn("cpu_usage_percent", {"host": host}, value, now.timestamp() - 1)], now=now)
    assert result.accepted == 1, result
    evaluate_rules(now=now)
    return Alert.objects.get(labels__host=host, state=AlertState.ACTIVE)


def test_alert_appears_live_and_acknowledging_it_shows_in_another_browser(asgi_server, open_page, users) -> None:
    AlertRule.objects.create(
        name="High CPU", key="cpu-high", metric="cpu_usage_percent", comparison=">", threshold=80, severity="critical"
    )
    operator = open_page("operator", "/alerts/")
    viewer = open_page("viewer", "/alerts/")
    for page in (operator, viewer):
        wait_live(page)
        page.evaluate("window.__notReloaded = true")

    started = time.monotonic()
    alert = fire_alert("gw-7")
    operator_row = operator.locator(f"#alert-{alert.pk}")
    viewer_row = viewer.locator(f"#alert-{alert.pk}")
    expect(operator_row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(viewer_row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    print(f"alert visible on both pages {time.monotonic() - started:.2f} s after ingestion")
    expect(viewer_row).to_contain_text("critical")
    expect(viewer_row).to_contain_text("host=gw-7")
    assert operator.evaluate("window.__notReloaded") and viewer.evaluate("window.__notReloaded")

    # The viewer is shown no actions, and the server refuses the one it might forge.
    assert viewer_row.get_by_role("button").count() == 0
    assert viewer.locator("text=Silence…").count() == 0
    token = next(c["value"] for c in viewer.context.cookies() if c["name"] == "csrftoken")
    forged = viewer.request.post(
        f"{asgi_server.url}/alerts/{alert.pk}/acknowledge",
        form={"csrfmiddlewaretoken": token},
        headers={"X-CSRFToken": token, "Referer": asgi_server.url + "/alerts/"},
    )
    assert forged.status == 403
    alert.refresh_from_db()
    assert alert.state == AlertState.ACTIVE
    viewer.screenshot(path=str(ARTIFACTS / "alerts-viewer.png"), full_page=True)
    operator.screenshot(path=str(ARTIFACTS / "alerts-operator.png"), full_page=True)

    operator_row.get_by_role("button", name="Acknowledge").click()
    expect(operator.locator(".toast-ok")).to_contain_text(f"Alert {alert.pk} acknowledged", timeout=LIVE_TIMEOUT_MS)
    expect(operator_row).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    # The other browser, logged in elsewhere, sees it leave the firing tab.
    expect(viewer_row).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    expect(viewer.locator('[data-tab="acknowledged"] .pill')).to_have_text("1", timeout=LIVE_TIMEOUT_MS)
    assert viewer.evaluate("window.__notReloaded")
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED and alert.acknowledged_by == users["operator"]
    viewer.goto(f"{asgi_server.url}/alerts/?tab=acknowledged")
    expect(viewer.locator(f"#alert-{alert.pk}")).to_contain_text("operator")
    assert not operator.csp_violations and not viewer.csp_violations


def test_page_reconnects_after_a_server_restart_and_resyncs(asgi_server, open_page) -> None:
    AlertRule.objects.create(name="High CPU", key="cpu-high", metric="cpu_usage_percent", comparison=">", threshold=80)
    page = open_page("viewer", "/alerts/")
    wait_live(page)
    page.evaluate("window.__notReloaded = true")
    asgi_server.stop()
    expect(page.locator("#live-status")).to_have_attribute("data-state", "retry", timeout=10_000)
    alert = fire_alert("gw-9")  # published while nobody listens: only a re-sync can show it
    asgi_server.start()
    wait_live(page)
    expect(page.locator(f"#alert-{alert.pk}")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.__notReloaded")


def test_metrics_chart_draws_points_and_the_threshold_line(asgi_server, open_page) -> None:
    AlertRule.objects.create(
        name="High CPU", key="cpu-high", metric="cpu_usage_percent", comparison=">", threshold=80, severity="medium"
    )
    now = timezone.now()
    ingest_samples(
        [
            SampleIn(
                "cpu_usage_percent", {"host": host}, 40.0 + (i % 20) + 10 * n, (now - timedelta(minutes=i)).timestamp()
            )
            for n, host in enumerate(("gw-1", "gw-2"))
            for i in range(60)
            if not 20 <= i < 30 or host == "gw-2"  # gw-1 has a gap of ten minutes
        ],
        now=now,
    )
    page = open_page("viewer", "/metrics/?metric=cpu_usage_percent&range=1h")
    chart = page.locator(".chart[data-loaded]")
    expect(chart).to_have_count(1, timeout=30_000)
    assert chart.get_attribute("data-series") == "2"
    assert chart.get_attribute("data-thresholds-drawn") == "1"
    drawn = page.evaluate(
        """() => {
        const el = document.querySelector('.chart');
        const u = el._uplot;
        const canvas = el.querySelector('canvas');
        const ctx = canvas.getContext('2d');
        const all = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        let inked = 0;
        for (let i = 3; i < all.length; i += 4) if (all[i] > 0) inked++;
        // The threshold's row, in canvas pixels: the medium severity's colour, dashed.
        const y = Math.round(u.valToPos(80, 'y', true));
        const row = ctx.getImageData(Math.round(u.bbox.left), y - 1, Math.round(u.bbox.width), 3).data;
        let threshold = 0;
        for (let i = 0; i < row.length; i += 4)
            if (Math.abs(row[i] - 202) < 40 && Math.abs(row[i + 1] - 138) < 40
                && row[i + 2] < 80 && row[i + 3] > 0) threshold++;
        const gaps = u.data.slice(1).flat().filter(v => v === null).length;
        return {inked, threshold, width: u.bbox.width, gaps, drawMs: Number(el.dataset.drawMs)};
    }"""
    )
    assert drawn["inked"] > 2_000, drawn  # lines, points, axes: far from an empty canvas
    assert drawn["threshold"] > drawn["width"] * 3 * 0.3, drawn  # a dashed line across the plot
    assert drawn["gaps"] >= 1, drawn  # gw-1's missing ten minutes break its line
    assert drawn["drawMs"] < 2_000, drawn
    expect(page.locator(".u-legend")).to_contain_text("host=gw-1")
    page.locator(".u-over").hover(position={"x": 300, "y": 100})
    expect(page.locator(".u-legend .u-value").nth(1)).to_contain_text("%")
    page.screenshot(path=str(ARTIFACTS / "metrics-chart.png"), full_page=True)
    assert not page.csp_violations


def test_new_samples_of_the_metric_on_screen_are_drawn_without_reload(asgi_server, open_page) -> None:
    now = timezone.now()
    history = [SampleIn("temp_celsius", {"host": "gw-1"}, 20.0 + i, (now - timedelta(minutes=30 - i)).timestamp())
               for i in range(20)]  # fmt: skip
    in_thread(lambda: ingest_samples(history, now=now))
    page = open_page("viewer", "/metrics/?metric=temp_celsius&range=1h")
    chart = page.locator(".chart[data-loaded]")
    expect(chart).to_have_count(1, timeout=30_000)
    wait_live(page)
    assert chart.get_attribute("data-points") == "20"
    page.evaluate("window.__notReloaded = true")
    later = timezone.now()
    # The ingestion path publishes `metrics.changed` after its commit; the page reloads the
    # chart's data, nothing else.
    in_thread(lambda: ingest_samples([SampleIn("temp_celsius", {"host": "gw-1"}, 45.0, later.timestamp())], now=later))
    expect(chart).to_have_attribute("data-points", "21", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.__notReloaded")


@pytest.mark.parametrize(
    ("viewport", "scheme", "suffix"),
    [(WIDE, "light", ""), (PHONE, "light", "-phone"), (WIDE, "dark", "-dark")],
    ids=["1280px", "phone", "dark"],
)
def test_every_page_renders_and_is_screenshotted(
    asgi_server, open_page, users, make_series, viewport, scheme, suffix
) -> None:
    fleet = build_fleet(6, users, make_series)
    alert = fleet["alerts"][0]
    page = open_page("admin", "/", viewport, scheme)
    if scheme == "dark":  # the theme follows the system preference
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 18, 22)"
    for name, path, marker in [
        ("overview", "/", "Latest alert events"),
        ("alerts", "/alerts/", "High CPU"),
        ("alert", f"/alerts/{alert.pk}/", "Event history"),
        ("metrics", "/metrics/?metric=cpu_usage_percent&range=6h", "Rules on cpu_usage_percent"),
        ("health", "/health/", "Ping 1"),
        ("targets", "/targets/", "Device 1"),
        ("logs", "/logs/", "Audit log"),
    ]:
        page.goto(asgi_server.url + path)
        expect(page.locator("main")).to_contain_text(marker)
        wait_live(page)
        if name in ("metrics", "alert"):
            expect(page.locator(".chart[data-loaded]")).to_have_count(1, timeout=30_000)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} scrolls sideways by {overflow} px at {viewport['width']} px"
        page.screenshot(path=str(ARTIFACTS / f"{name}{suffix}.png"), full_page=True)
    assert not page.csp_violations


def test_keyboard_reaches_and_uses_an_action(asgi_server, open_page) -> None:
    AlertRule.objects.create(name="High CPU", key="cpu-high", metric="cpu_usage_percent", comparison=">", threshold=80)
    alert = fire_alert("gw-3")
    page = open_page("operator", "/alerts/")
    wait_live(page)
    button = page.locator(f"#alert-{alert.pk}").get_by_role("button", name="Acknowledge")
    for _ in range(60):
        page.keyboard.press("Tab")
        if button.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the Acknowledge button")
    page.keyboard.press("Enter")
    expect(page.locator(f"#alert-{alert.pk}")).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED
