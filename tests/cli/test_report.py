"""`manage.py report alerts|performance`: tables, JSON and CSV of the data, and the HTML
page with its charts."""

import csv
import io
import json
from datetime import datetime, timedelta

import pytest

from .conftest import run

pytestmark = pytest.mark.django_db


@pytest.fixture
def cpu_series(make_series, now):
    ms = int(now.timestamp() * 1000)
    return make_series(
        "cpu_usage_percent",
        {"host": "gw-1"},
        [(ms - 3 * 3600_000, 10.0), (ms - 2 * 3600_000, 50.0), (ms - 60_000, 90.0)],
    )


def test_alerts_report_table(world):
    outcome = run("report", "alerts", "--days", "7")

    assert outcome.code == 0
    out = outcome.stdout
    assert "Alert report, last 7 days" in out
    assert "Alerts fired per rule and severity" in out and "high-cpu" in out and "service-down" in out
    assert "Noisiest rules" in out
    assert "Notifications per channel" in out and "slack" in out
    assert "Mean time to acknowledge" in out and "10 min" in out


def test_alerts_report_json_counts_rules_times_flaps_and_channels(world):
    data = json.loads(run("report", "alerts", "--days", "7", "--format", "json").stdout)

    assert data["report"] == "alerts" and data["days"] == 7
    by_rule = {(r["rule"], r["severity"]): r for r in data["by_rule"]}
    cpu = by_rule["high-cpu", "high"]
    # The alert fired 10 days ago is outside the week; the pending one never fired.
    assert (cpu["fired"], cpu["acknowledged"], cpu["resolved"]) == (2, 1, 2)
    assert cpu["mean_time_to_acknowledge_s"] == 600.0
    assert cpu["mean_time_to_resolve_s"] == (3600 + 1800) / 2
    assert cpu["flaps"] == 1  # fired again 30 min after resolving
    assert by_rule["service-down", "critical"]["fired"] == 1
    assert data["noisiest_rules"][0] == {
        "rule": "high-cpu",
        "name": "High CPU",
        "severity": "high",
        "fired": 2,
        "series": 1,
        "flaps": 1,
    }
    channels = {r["channel_key"]: r for r in data["notifications"]}
    assert (channels["email"]["sent"], channels["email"]["failed"], channels["email"]["pending"]) == (2, 0, 1)
    assert (channels["slack"]["sent"], channels["slack"]["failed"]) == (0, 1)
    assert channels["slack"]["failure_rate_percent"] == 100.0
    assert data["summary"]["alerts_fired"] == 3 and data["summary"]["still_firing"] == 1
    assert sum(day["total"] for day in data["fired_per_day"]) == 3
    assert sum(data["charts"]["fired_per_day"]["series"]["high"]) == 2


def test_a_shorter_period_counts_only_its_alerts(world):
    data = json.loads(run("report", "alerts", "--days", "1", "--format", "json").stdout)

    assert [(r["rule"], r["fired"]) for r in data["by_rule"]] == [("service-down", 1)]


def test_alerts_report_html_is_standalone_with_its_charts(world, tmp_path):
    path = tmp_path / "alerts.html"

    outcome = run("report", "alerts", "--days", "7", "--output", str(path))

    assert outcome.code == 0
    assert f"Wrote alerts report to {path}" in outcome.stdout
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in page
    assert 'data-chart="fired_per_day"' in page and 'data-chart="notifications_per_channel"' in page
    # a bar per day and severity, with its value as a tooltip
    assert "<title>high " in page and ": 2 alerts</title>" in page and "<title>critical " in page
    assert "<title>failed slack: 1 notifications</title>" in page
    assert "high-cpu" in page and "Noisiest rules" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_performance_report_json_per_target_and_system_metrics(world, cpu_series):
    data = json.loads(run("report", "performance", "--days", "30", "--format", "json").stdout)

    (api,) = data["targets"]
    assert api["target"] == "api"
    assert api["uptime_percent"] == 50.0  # 3 of the 6 judged results were up; unknown judges nothing
    # response times 0.1 0.2 0.3 1.0 1.0 2.0 s: nearest-rank p50 is the 3rd, p95 and p99 the 6th
    assert (api["p50_ms"], api["p95_ms"], api["p99_ms"]) == (300.0, 2000.0, 2000.0)
    assert api["incidents"] == 2
    assert api["results"] == 7
    (cpu,) = data["system_metrics"]
    assert (cpu["metric"], cpu["min"], cpu["avg"], cpu["max"]) == ("cpu_usage_percent", 10.0, 50.0, 90.0)
    assert data["summary"]["incidents"] == 2
    assert "cpu_usage_percent" in data["charts"]


def test_performance_report_table_and_html(world, cpu_series, tmp_path):
    path = tmp_path / "performance.html"

    outcome = run("report", "performance", "--days", "30", "--output", str(path))

    assert "Performance report, last 30 days" in outcome.stdout
    assert "Targets" in outcome.stdout and "api" in outcome.stdout and "50" in outcome.stdout
    assert "System metrics" in outcome.stdout and "cpu_usage_percent" in outcome.stdout
    page = path.read_text()
    assert 'data-chart="uptime"' in page and 'data-chart="response_time"' in page
    assert 'data-chart="cpu_usage_percent"' in page and "<path d=" in page
    assert "<title>uptime % api: 50%</title>" in page


def test_report_csv_has_a_section_column(world):
    rows = list(csv.DictReader(io.StringIO(run("report", "alerts", "--days", "7", "--format", "csv").stdout)))

    by_rule = [r for r in rows if r["section"] == "by_rule"]
    assert {(r["rule"], r["fired"]) for r in by_rule} == {("high-cpu", "2"), ("service-down", "1")}
    assert {r["channel_key"] for r in rows if r["section"] == "notifications"} == {"email", "slack"}


@pytest.mark.parametrize("suffix", ["json", "csv"])
def test_output_file_holds_the_data(world, tmp_path, suffix):
    path = tmp_path / f"performance.{suffix}"

    outcome = run("report", "performance", "--days", "7", "--output", str(path), "--format", "json")

    assert f"Wrote performance report to {path}" in outcome.stderr  # stdout is the JSON
    json.loads(outcome.stdout)
    text = path.read_text()
    if suffix == "json":
        assert json.loads(text)["targets"][0]["incidents"] == 2
    else:
        assert next(csv.DictReader(io.StringIO(text)))["section"] == "targets"


@pytest.mark.parametrize("days", ["0", "-3", "367", "week", "1.5"])
def test_bad_days_is_bad_usage(db, days):
    outcome = run("report", "alerts", "--days", days)

    assert outcome.code == 2
    assert "--days" in outcome.error and "number of days" in outcome.error


def test_unknown_output_format_is_bad_usage(db, tmp_path):
    outcome = run("report", "alerts", "--output", str(tmp_path / "report.pdf"))

    assert outcome.code == 2
    assert "name a .html, .json or .csv file" in outcome.error
    assert not (tmp_path / "report.pdf").exists()


def test_unwritable_output_fails_with_exit_1(db, tmp_path):
    outcome = run("report", "alerts", "--output", str(tmp_path / "missing" / "report.html"))

    assert outcome.code == 1
    assert "Cannot write" in outcome.error and "check that its directory exists" in outcome.error


def test_unknown_report_kind_is_bad_usage(db):
    outcome = run("report", "capacity")

    assert outcome.code == 2
    assert "invalid choice: 'capacity'" in outcome.error


def test_report_of_an_empty_system(db):
    data = json.loads(run("report", "alerts", "--format", "json").stdout)

    assert data["days"] == 7 and data["by_rule"] == [] and data["summary"]["alerts_fired"] == 0
    assert "No alert fired in this period." in run("report", "alerts").stdout


def test_report_periods_end_now(world, now):
    data = json.loads(run("report", "alerts", "--days", "3", "--format", "json").stdout)

    since, until = datetime.fromisoformat(data["since"]), datetime.fromisoformat(data["until"])
    assert until - since == timedelta(days=3)
    assert timedelta(0) <= until - now < timedelta(minutes=1)
