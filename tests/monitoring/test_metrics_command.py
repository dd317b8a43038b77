import json
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command("metrics", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def stored(make_series):
    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    make_series(
        "cpu_usage_percent", {"host": "gw-1"}, [(now_ms - 120_000, 10.0), (now_ms - 60_000, 30.0), (now_ms, 20.0)]
    )
    make_series("cpu_usage_percent", {"host": "gw-2"}, [(now_ms, 75.5)])
    make_series("memory_usage_percent", {"host": "gw-1"}, [(now_ms, 41.0)])
    return now_ms


def test_table_lists_series_with_their_last_value(stored):
    output = _run()

    lines = [line for line in output.splitlines() if "usage_percent" in line]
    assert len(lines) == 3
    assert any("cpu_usage_percent" in line and "host=gw-2" in line and "75.5" in line for line in lines)
    assert any("memory_usage_percent" in line and "41" in line for line in lines)
    assert "\x1b[" not in output  # no colour when not on a terminal


def test_table_filters_by_metric_and_label(stored):
    output = _run("--metric", "cpu_usage_percent", "--label", "host:gw-1")

    assert "gw-1" in output and "gw-2" not in output and "memory" not in output


def test_hours_table_summarises_each_series(stored):
    output = _run("--metric", "cpu_usage_percent", "--hours", "1")

    (row,) = [line for line in output.splitlines() if "host=gw-1" in line]
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    # metric, labels, points, min, avg, max, last, last time
    assert cells[:7] == ["cpu_usage_percent", "host=gw-1", "3", "10", "20", "30", "20"]


def test_json_prints_what_the_api_answers(stored, client_for):
    printed = json.loads(_run("--metric", "cpu_usage_percent", "--hours", "1", "--format", "json"))
    api = client_for("viewer").get("/api/metrics", {"metric": "cpu_usage_percent", "hours": 1}).json()

    assert printed["metrics"] == api["metrics"]
    assert printed["count"] == 2
    gw1 = next(series for series in printed["metrics"] if series["labels"] == {"host": "gw-1"})
    assert [point["value"] for point in gw1["points"]] == [10.0, 30.0, 20.0]


def test_json_list_has_last_values(stored):
    printed = json.loads(_run("--format", "json", "--label", "host:gw-2"))

    assert printed["count"] == 1
    assert printed["metrics"][0]["last_value"] == 75.5


def test_limit_says_how_many_are_left_out(stored):
    output = _run("--limit", "1")

    assert "first 1 of 3" in output


@pytest.mark.parametrize(
    "args, parameter",
    [(["--hours", "-2"], "--hours"), (["--label", "nocolon"], "--label"), (["--step", "60"], "--step")],
)
def test_bad_arguments_exit_2_naming_the_argument(db, args, parameter):
    with pytest.raises(CommandError) as raised:
        _run(*args)

    assert raised.value.returncode == 2
    assert str(raised.value).startswith(parameter)
