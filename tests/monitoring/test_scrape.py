import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, start_http_server

from monitoring.choices import TargetKind
from monitoring.models import MonitoringTarget, Sample, Series
from monitoring.scrape import (
    ScrapeTarget,
    claim_due_targets,
    dispatch_due_scrapes,
    merge_labels,
    parse_exposition,
    release_claims,
    scrape_and_ingest,
    scrape_targets,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def exporter():
    """A real prometheus_client exporter on a free port, with its own registry holding a
    counter, a gauge, a histogram and a summary."""
    registry = CollectorRegistry()
    requests = Counter("http_requests", "Requests served.", ["path"], registry=registry)
    temperature = Gauge("device_temperature_celsius", "Board temperature.", registry=registry)
    latency = Histogram("request_latency_seconds", "Latency.", buckets=(0.1, 0.5), registry=registry)
    size = Summary("payload_bytes", "Payload size.", registry=registry)
    requests.labels(path="/a").inc(3)
    requests.labels(path="/b").inc()
    temperature.set(41.5)
    for seconds in (0.05, 0.3, 0.3, 2.0):
        latency.observe(seconds)
    size.observe(100)
    size.observe(300)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class _Bodies(BaseHTTPRequestHandler):
    """Answers GET <path> with the body the test set for it (and counts requests in flight)."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        with server.lock:
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
        try:
            time.sleep(server.delay)
            status, body = server.bodies.get(self.path, (404, b"not found"))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            with server.lock:
                server.in_flight -= 1

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Bodies)
    server.bodies, server.delay, server.lock = {}, 0.0, threading.Lock()
    server.in_flight = server.most_in_flight = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port():
    """A socket that accepts connections (the kernel completes them from the backlog) and
    never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def make_target(db):
    def make(slug: str, endpoint: str, **extra) -> MonitoringTarget:
        fields = {"name": slug, "kind": TargetKind.PROMETHEUS, "check_interval": 30, "timeout": 1, **extra}
        return MonitoringTarget.objects.create(slug=slug, endpoint=endpoint, **fields)

    return make


def _stored(metric: str, **labels) -> dict[tuple, float]:
    """{sorted label items: last value} of the stored series of `metric` whose labels
    include `labels`."""
    found = {}
    for series in Series.objects.filter(name=metric):
        if all(series.labels.get(key) == value for key, value in labels.items()):
            found[tuple(sorted(series.labels.items()))] = series.last_value
    return found


def test_scrape_of_a_real_exporter_stores_every_kind_with_target_labels(exporter, make_target):
    target = make_target("edge-exporter", exporter, labels={"site": "lab"})
    instance = exporter.split("/")[2]
    target_labels = {"job": "edge-exporter", "instance": instance, "site": "lab"}

    outcome = scrape_and_ingest([target.pk])

    assert outcome.up == 1 and outcome.errors == {}
    assert outcome.rejected == 0
    assert _stored("http_requests_total", path="/a", **target_labels) == {
        tuple(sorted({**target_labels, "path": "/a"}.items())): 3.0
    }
    assert list(_stored("device_temperature_celsius", **target_labels).values()) == [41.5]
    buckets = {dict(key)["le"]: value for key, value in _stored("request_latency_seconds_bucket").items()}
    assert buckets == {"0.1": 1.0, "0.5": 3.0, "+Inf": 4.0}
    assert list(_stored("request_latency_seconds_count", **target_labels).values()) == [4.0]
    assert list(_stored("request_latency_seconds_sum", **target_labels).values()) == [pytest.approx(2.65)]
    assert list(_stored("payload_bytes_count").values()) == [2.0]
    assert list(_stored("payload_bytes_sum").values()) == [400.0]
    assert list(_stored("up", **target_labels).values()) == [1.0]
    scraped = list(_stored("scrape_samples_scraped", **target_labels).values())
    # Counter: 2 + 2 _created; gauge: 1; histogram: 3 buckets, sum, count, created; summary: 3.
    assert scraped == [14.0]
    (duration,) = _stored("scrape_duration_seconds", **target_labels).values()
    assert 0 < duration < 1


def test_a_target_that_times_out_and_one_that_returns_garbage_record_up_0_and_others_are_stored(
    exporter, http_server, silent_port, make_target
):
    http_server.bodies["/metrics"] = (200, b"<html><body>Welcome to nginx!</body></html>\n")
    good = make_target("good", exporter)
    hanging = make_target("hanging", f"http://127.0.0.1:{silent_port}/metrics", timeout=1)
    garbage = make_target("garbage", f"{http_server.url}/metrics")

    outcome = scrape_and_ingest([good.pk, hanging.pk, garbage.pk])

    assert outcome.targets == 3 and outcome.up == 1
    assert "timed out" in outcome.errors[hanging.pk]
    assert "invalid exposition" in outcome.errors[garbage.pk]
    assert list(_stored("up", job="good").values()) == [1.0]
    assert list(_stored("up", job="hanging").values()) == [0.0]
    assert list(_stored("up", job="garbage").values()) == [0.0]
    assert list(_stored("scrape_samples_scraped", job="garbage").values()) == [0.0]
    (hung_for,) = _stored("scrape_duration_seconds", job="hanging").values()
    assert hung_for >= 0.9
    assert list(_stored("device_temperature_celsius", job="good").values()) == [41.5]
    # Nothing of the failed targets but their three report series.
    assert set(Series.objects.filter(labels__job="garbage").values_list("name", flat=True)) == {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
    }


def test_http_errors_and_refused_connections_record_up_0(http_server, make_target):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    http_server.bodies["/broken"] = (500, b"boom")
    failing = make_target("failing", f"{http_server.url}/broken")
    refused = make_target("refused", f"http://127.0.0.1:{port}/metrics")

    outcome = scrape_and_ingest([failing.pk, refused.pk])

    assert outcome.errors[failing.pk] == "HTTP 500"
    assert "ConnectError" in outcome.errors[refused.pk]
    assert list(_stored("up", job="failing").values()) == [0.0]
    assert list(_stored("up", job="refused").values()) == [0.0]


def test_exporter_timestamps_are_honoured_and_others_get_the_scrape_time(http_server, make_target):
    exported_ms = int(time.time() * 1000) - 120_000
    http_server.bodies["/metrics"] = (
        200,
        f"# TYPE battery_volts gauge\nbattery_volts 3.7 {exported_ms}\nsignal_dbm -71\n".encode(),
    )
    target = make_target("sensor", f"{http_server.url}/metrics")
    before_ms = int(time.time() * 1000)

    scrape_and_ingest([target.pk])

    battery = Series.objects.get(name="battery_volts")
    assert list(Sample.objects.filter(series=battery).values_list("ts", "value")) == [(exported_ms, 3.7)]
    signal = Series.objects.get(name="signal_dbm")
    (ts,) = Sample.objects.filter(series=signal).values_list("ts", flat=True)
    assert before_ms - 1000 <= ts <= int(time.time() * 1000)
    up = Series.objects.get(name="up", labels__job="sensor")
    assert up.last_ts == ts  # the scrape's own series share its start time


def test_scraped_labels_that_clash_with_target_labels_become_exported(http_server, make_target):
    http_server.bodies["/metrics"] = (200, b'queue_depth{job="mqtt-bridge",instance="inner",queue="q1"} 7\n')
    target = make_target("bridge", f"{http_server.url}/metrics")

    scrape_and_ingest([target.pk])

    (labels,) = Series.objects.filter(name="queue_depth").values_list("labels", flat=True)
    assert labels == {
        "job": "bridge",
        "instance": http_server.url.removeprefix("http://"),
        "exported_job": "mqtt-bridge",
        "exported_instance": "inner",
        "queue": "q1",
    }


def test_target_labels_override_job_and_instance(exporter, make_target):
    target = make_target("gw", exporter, labels={"instance": "gateway-7", "job": "gateways"})

    scrape_and_ingest([target.pk])

    assert list(_stored("up", job="gateways", instance="gateway-7").values()) == [1.0]


def test_concurrency_is_bounded(http_server):
    http_server.bodies["/metrics"] = (200, b"x 1\n")
    http_server.delay = 0.2
    targets = [ScrapeTarget(i, f"{http_server.url}/metrics", 5.0, {"job": f"t{i}"}) for i in range(6)]

    results = scrape_targets(targets, concurrency=2)

    assert [result.up for result in results] == [True] * 6
    assert http_server.most_in_flight == 2


def test_merge_labels_keeps_prefixing_until_free():
    merged = merge_labels({"job": "a", "exported_job": "b", "x": "1"}, {"job": "t", "exported_job": "u"})

    assert merged == {
        "job": "t",
        "exported_job": "u",
        "exported_exported_job": "a",
        "exported_exported_exported_job": "b",
        "x": "1",
    }


def test_parse_exposition_rejects_a_body_with_one_bad_line():
    with pytest.raises(ValueError):
        parse_exposition("good 1\nbad line here\n", labels={}, timestamp=0.0)


def test_due_targets_are_claimed_once_per_interval(make_target):
    due = make_target("due", "http://127.0.0.1:1/metrics", check_interval=60)
    make_target("disabled", "http://127.0.0.1:1/metrics", enabled=False)
    make_target("service", "http://127.0.0.1:1/", kind=TargetKind.SERVICE)

    assert claim_due_targets() == [due.pk]
    assert claim_due_targets() == []  # still within its interval
    release_claims([due.pk])
    assert claim_due_targets() == [due.pk]


def test_dispatch_hands_out_due_targets_in_batches(make_target):
    targets = [make_target(f"t{i}", "http://127.0.0.1:1/metrics") for i in range(5)]
    sent: list[list[int]] = []

    assert dispatch_due_scrapes(sent.append, batch_size=2) == 5

    assert [len(batch) for batch in sent] == [2, 2, 1]
    assert sorted(target_id for batch in sent for target_id in batch) == sorted(t.pk for t in targets)
    assert dispatch_due_scrapes(sent.append, batch_size=2) == 0


@pytest.fixture
def eager_celery():
    """Tasks sent with .delay() run in-process, as a worker would run them. The app reads
    Django's CELERY_-prefixed settings first, so those are the keys to override."""
    from config.celery import app

    overrides = {"CELERY_TASK_ALWAYS_EAGER": True, "CELERY_TASK_EAGER_PROPAGATES": True}
    before = {key: bool(app.conf.get(key)) for key in overrides}
    app.conf.update(overrides)
    yield
    app.conf.update(before)


def test_the_beat_task_scrapes_due_targets_through_batch_tasks(exporter, make_target, eager_celery):
    from monitoring.tasks import scrape_targets_task

    make_target("edge", exporter)

    assert scrape_targets_task.apply().get() == "1 prometheus targets due"
    assert list(_stored("up", job="edge").values()) == [1.0]
    assert list(_stored("device_temperature_celsius", job="edge").values()) == [41.5]
    assert scrape_targets_task.apply().get() == "0 prometheus targets due"  # not due again yet
