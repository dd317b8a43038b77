"""file_sd and http_sd: a Prometheus service-discovery file whose targets become proposals,
re-read when it changes (new targets proposed, withdrawn ones dropped or flagged, labels
followed); an http_sd endpoint likewise; malformed documents refused with a reason."""

import json
import os
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from healthchecks.choices import CheckKind
from monitoring.choices import DiscoverySource, DiscoveryState, TargetKind
from monitoring.discovery import sd
from monitoring.discovery.models import DiscoveredTarget
from monitoring.discovery.run import run_discovery
from monitoring.discovery.sd import SdError, parse_sd
from monitoring.models import MonitoringTarget
from tests.security.servers import http_server

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_file_cache():
    sd._file_cache.clear()
    yield
    sd._file_cache.clear()


def write_sd(path, groups) -> None:
    # Written to a temporary name and renamed, as tools that generate these files do.
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(groups))
    os.replace(temporary, path)


def discover(now=None):
    return run_discovery(now=now or timezone.now(), sources=[DiscoverySource.FILE_SD, DiscoverySource.HTTP_SD])


def rows() -> dict[str, DiscoveredTarget]:
    return {row.identity: row for row in DiscoveredTarget.objects.select_related("target")}


def test_targets_of_a_file_sd_file_that_then_changes(settings, tmp_path, client_for):
    path = tmp_path / "gateways.json"
    settings.MONITORING_DISCOVERY_FILE_SD = [str(tmp_path / "*.json")]
    write_sd(
        path,
        [
            {"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"job": "node", "site": "berlin"}},
            {"targets": ["10.0.0.3:8443"], "labels": {"job": "gw", "__scheme__": "https", "__metrics_path__": "/m"}},
        ],
    )
    discover()
    found = rows()
    assert set(found) == {"file_sd:10.0.0.1:9100", "file_sd:10.0.0.2:9100", "file_sd:10.0.0.3:8443"}
    first = found["file_sd:10.0.0.1:9100"]
    assert (first.state, first.kind, first.endpoint, first.labels, first.name) == (
        DiscoveryState.PENDING,
        TargetKind.PROMETHEUS,
        "http://10.0.0.1:9100/metrics",
        {"job": "node", "site": "berlin"},
        "node 10.0.0.1:9100",
    )
    assert found["file_sd:10.0.0.3:8443"].endpoint == "https://10.0.0.3:8443/m"
    assert client_for("admin").post(f"/api/discovered-targets/{first.pk}/approve").status_code == 200
    target = MonitoringTarget.objects.get(slug="sd-10-0-0-1-9100")
    assert (target.kind, target.endpoint) == (TargetKind.PROMETHEUS, "http://10.0.0.1:9100/metrics")
    assert target.health_checks.get().kind == CheckKind.HTTP

    # Unchanged: nothing is written (the file is not even parsed again).
    before = {identity: row.last_seen_at for identity, row in rows().items()}
    report = discover(timezone.now() + timedelta(minutes=1))
    assert report.lines["file_sd"].endswith("unchanged")
    assert {identity: row.last_seen_at for identity, row in rows().items()} == before

    # The file changes: .2 and .3 leave, .1 is relabelled, .4 arrives.
    write_sd(path, [{"targets": ["10.0.0.1:9100", "10.0.0.4:9100"], "labels": {"job": "node", "site": "hamburg"}}])
    discover(timezone.now() + timedelta(minutes=2))
    found = rows()
    assert set(found) == {"file_sd:10.0.0.1:9100", "file_sd:10.0.0.4:9100"}  # pending .2 and .3 withdrawn
    assert found["file_sd:10.0.0.4:9100"].state == DiscoveryState.PENDING
    target.refresh_from_db()
    assert target.labels["site"] == "hamburg"  # the approved target follows its labels

    # The approved one leaves the file: flagged, its target kept (deleting is an admin's call).
    write_sd(path, [{"targets": ["10.0.0.4:9100"], "labels": {"job": "node"}}])
    discover(timezone.now() + timedelta(minutes=3))
    approved = rows()["file_sd:10.0.0.1:9100"]
    assert approved.state == DiscoveryState.APPROVED and approved.missing_since is not None
    assert MonitoringTarget.objects.filter(slug="sd-10-0-0-1-9100").exists()
    # ...and listed again, no longer missing.
    write_sd(path, [{"targets": ["10.0.0.1:9100", "10.0.0.4:9100"], "labels": {"job": "node"}}])
    discover(timezone.now() + timedelta(minutes=4))
    assert rows()["file_sd:10.0.0.1:9100"].missing_since is None


def test_a_malformed_file_keeps_the_targets_it_listed_before(settings, tmp_path):
    path = tmp_path / "sd.json"
    settings.MONITORING_DISCOVERY_FILE_SD = [str(path)]
    write_sd(path, [{"targets": ["10.0.0.1:9100"]}])
    discover()
    path.write_text('[{"targets": ["10.0.0.1:9100"')  # half written
    report = discover(timezone.now() + timedelta(minutes=1))
    assert "not JSON" in report.errors[0]
    assert set(rows()) == {"file_sd:10.0.0.1:9100"}


def test_auto_approved_file_sd_targets_are_scraped_targets_at_once(settings, tmp_path):
    settings.MONITORING_DISCOVERY_AUTO_APPROVE = ["file_sd"]
    path = tmp_path / "sd.json"
    settings.MONITORING_DISCOVERY_FILE_SD = [str(path)]
    write_sd(path, [{"targets": ["exporter.local:9100"], "labels": {"job": "node"}}])
    discover()
    target = MonitoringTarget.objects.get(slug="sd-exporter-local-9100")
    assert (target.kind, target.labels) == (TargetKind.PROMETHEUS, {"job": "node"})
    assert rows()["file_sd:exporter.local:9100"].state == DiscoveryState.APPROVED


def test_http_sd_endpoint_lists_targets(settings):
    document = json.dumps([{"targets": ["127.0.0.1:9100"], "labels": {"job": "node"}}]).encode()
    with http_server(body=document) as server:
        settings.MONITORING_DISCOVERY_HTTP_SD = [f"{server.url}/sd"]
        report = discover()
        assert server.paths == ["/sd"]
    assert report.lines["http_sd"].startswith("1 listed, 1 new")
    assert rows()["http_sd:127.0.0.1:9100"].endpoint == "http://127.0.0.1:9100/metrics"


def test_http_sd_obeys_the_outbound_policy_and_an_unreachable_source_withdraws_nothing(settings):
    document = json.dumps([{"targets": ["127.0.0.1:9100"]}]).encode()
    with http_server(body=document) as server:
        settings.MONITORING_DISCOVERY_HTTP_SD = [f"{server.url}/sd"]
        discover()
        settings.MONITORING_OUTBOUND_DENY = ["127.0.0.1/32"]
        report = discover()
        assert server.paths == ["/sd"]  # the second round never connected
    assert "refused" in report.errors[0]
    assert set(rows()) == {"http_sd:127.0.0.1:9100"}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"targets": []}, "must be a JSON list"),
        ([{"labels": {}}], '[0]: a target group is an object with a "targets" list'),
        ([{"targets": ["no-port"]}], "[0].targets[0]: 'no-port' is not host:port"),
        ([{"targets": ["h:99999"]}], "is not host:port"),
        ([{"targets": ["h:1"], "labels": {"bad-name": "x"}}], "[0].labels.bad-name"),
        ([{"targets": ["h:1"], "labels": {"__scheme__": "ftp"}}], "is not http or https"),
    ],
)
def test_malformed_sd_documents_are_refused_with_where(document, reason):
    with pytest.raises(SdError) as refused:
        parse_sd(document, source=DiscoverySource.FILE_SD, origin="f")
    assert reason in str(refused.value)


def test_discover_command_lists_pending_sd_targets(settings, tmp_path):
    path = tmp_path / "sd.json"
    settings.MONITORING_DISCOVERY_FILE_SD = [str(path)]
    write_sd(path, [{"targets": ["10.9.9.9:9100"], "labels": {"job": "node"}}])
    out = StringIO()
    call_command("discover", "--source", "file_sd", "--format", "json", stdout=out, stderr=StringIO())
    assert [row["name"] for row in json.loads(out.getvalue())] == ["node 10.9.9.9:9100"]
