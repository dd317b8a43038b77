"""`manage.py test_rule`: differences from `expected` (exit 1), malformed scenario files
(exit 2 with the JSON path of the first problem) and replays of stored rules."""

import copy
import json
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.alerts.test_evaluation import make_rule, store_samples

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "alert-scenarios"
CPU = json.loads((FIXTURES / "cpu-high-for-5m.json").read_text())


def write(tmp_path: Path, document: Any, name: str = "scenario.json") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def run_scenario(path: Path) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("test_rule", scenario=str(path), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_wrong_expectation_exits_1_naming_time_and_alert(tmp_path: Path) -> None:
    scenario = copy.deepcopy(CPU)
    scenario["expected"][6]["firing"] = []  # t=360 really fires gw-1
    scenario["expected"][9]["firing"] = [{"host": "gw-2", "severity": "warning"}]  # t=540: nothing fires
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("test_rule", scenario=str(write(tmp_path, scenario)), stdout=out, stderr=err)
    assert raised.value.returncode == 1
    assert err.getvalue().splitlines() == [
        't=360: unexpected firing {host="gw-1", severity="warning"}',
        't=540: expected firing {host="gw-2", severity="warning"}, but it is not firing',
    ]
    assert "2 place(s)" in str(raised.value)
    assert len(json.loads(out.getvalue())["timeline"]) == 13  # the timeline is printed all the same


def test_scenario_without_expected_prints_the_timeline_and_exits_0(tmp_path: Path) -> None:
    scenario = {key: value for key, value in CPU.items() if key != "expected"}
    out, err = run_scenario(write(tmp_path, scenario))
    assert json.loads(out)["timeline"][6]["firing"] == [{"host": "gw-1", "severity": "warning"}]
    assert err == ""


def test_partial_expected_compares_only_the_times_listed(tmp_path: Path) -> None:
    scenario = copy.deepcopy(CPU)
    scenario["expected"] = [{"t": 420, "firing": [{"severity": "warning", "host": "gw-1"}]}]
    run_scenario(write(tmp_path, scenario))


def test_staleness_marker_and_encoded_values(tmp_path: Path) -> None:
    scenario = {
        "eval_interval_s": 60,
        "end_s": 240,
        "rule": {"metric": "m", "comparison": "!=", "threshold": "+Inf", "duration_s": 0, "severity": "low"},
        "series": [
            {"metric": "m", "labels": {"d": "1"}, "samples": [[0, "NaN"], [60, "stale"], [120, "+Inf"], [180, "-Inf"]]},
            {"metric": "other", "labels": {"d": "2"}, "samples": [[0, 1]]},
        ],
        "expected": [
            {"t": 0, "firing": [{"d": "1", "severity": "low"}]},  # NaN != +Inf
            {"t": 60, "firing": []},  # stale: absent
            {"t": 120, "firing": []},  # +Inf != +Inf is false
            {"t": 180, "firing": [{"d": "1", "severity": "low"}]},
            {"t": 240, "firing": [{"d": "1", "severity": "low"}]},  # -Inf still within the lookback
        ],
    }
    run_scenario(write(tmp_path, scenario))


def _malformed(**changes: Any) -> dict[str, Any]:
    scenario = copy.deepcopy(CPU)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = scenario
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is KeyError:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return scenario


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("{not json", "$: not valid JSON: "),
        ([1, 2], "$: must be an object, not an array"),
        (_malformed(eval_interval_s=KeyError), "$.eval_interval_s: is required"),
        (_malformed(eval_interval_s=0), "$.eval_interval_s: must be at least 1, not 0"),
        (_malformed(end_s="720"), "$.end_s: must be an integer, not the string '720'"),
        (_malformed(rule__comparison="=>"), "$.rule.comparison: must be one of > < >= <= == !=, not '=>'"),
        (_malformed(rule__threshold="stale"), '$.rule.threshold: must be a number, "NaN", "+Inf", "-Inf", not'),
        (_malformed(rule__duration_s=-60), "$.rule.duration_s: must not be negative, not -60"),
        (_malformed(rule__matchers={"env": 1}), "$.rule.matchers.env: label values must be strings, not the number 1"),
        (_malformed(series__0__samples__3=[180]), "$.series[0].samples[3]: must be a [time, value] pair"),
        (_malformed(series__0__samples__3=[180, "high"]), "$.series[0].samples[3][1]: must be a number"),
        (
            _malformed(series__0__samples__3=[100, 95]),
            "$.series[0].samples[3][0]: times must increase, 100 follows 120",
        ),
        (_malformed(series__0__samples__0=[-60, 1]), "$.series[0].samples[0][0]: must be at least 0, not -60"),
        (_malformed(series__0__samples__0=[True, 1]), "$.series[0].samples[0][0]: must be an integer, not a boolean"),
        (_malformed(series__0__metric=KeyError), "$.series[0].metric: is required"),
        (_malformed(expected__2__t=90), "$.expected[2].t: 90 is not an evaluation time (multiples of 60 up to 720)"),
        (_malformed(expected__2__t=60), "$.expected[2].t: time 60 is listed twice"),
        (_malformed(expected__6__firing={"host": "gw-1"}), "$.expected[6].firing: must be an array, not an object"),
    ],
)
def test_malformed_scenario_exits_2_with_json_path(tmp_path: Path, scenario: Any, message: str) -> None:
    path = write(tmp_path, scenario)
    with pytest.raises(CommandError) as raised:
        run_scenario(path)
    assert raised.value.returncode == 2
    assert str(raised.value).startswith(f"{path}: {message}")


def test_duplicate_series_is_malformed(tmp_path: Path) -> None:
    scenario = copy.deepcopy(CPU)
    scenario["series"].append(copy.deepcopy(scenario["series"][0]))
    with pytest.raises(CommandError, match=r"\$\.series\[1\]\.labels: the same metric and labels as \$\.series\[0\]"):
        run_scenario(write(tmp_path, scenario))


def test_missing_file_exits_2(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read") as raised:
        run_scenario(tmp_path / "nope.json")
    assert raised.value.returncode == 2


def test_exit_statuses_from_the_command_line(tmp_path: Path) -> None:
    wrong = copy.deepcopy(CPU)
    wrong["expected"][0]["firing"] = [{"host": "gw-1", "severity": "warning"}]
    cases = [
        (write(tmp_path, wrong, "wrong.json"), 1, 't=0: expected firing {host="gw-1", severity="warning"}'),
        (write(tmp_path, _malformed(rule=[]), "bad.json"), 2, "$.rule: must be an object, not an array"),
    ]
    for path, status, stderr in cases:
        result = subprocess.run(
            [sys.executable, "manage.py", "test_rule", "--scenario", str(path)],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == status, result.stderr
        assert stderr in result.stderr
        if status == 1:
            assert "timeline" in json.loads(result.stdout)


@pytest.mark.django_db
def test_rule_id_replays_stored_history() -> None:
    rule = make_rule("cpu", duration=120, evaluation_interval=60, severity="high")
    now = timezone.now()
    start = now - timedelta(hours=1)
    # gw-1 is above 80 from 30 minutes ago until 10 minutes ago; gw-2 never is.
    points = [(start + timedelta(minutes=m), 95.0 if 30 <= m < 50 else 40.0) for m in range(61)]
    store_samples("cpu_usage_percent", {"host": "gw-1"}, points)
    store_samples("cpu_usage_percent", {"host": "gw-2"}, [(at, 10.0) for at, _ in points])

    out = StringIO()
    call_command("test_rule", rule_id=rule.id, hours=1, stdout=out)
    document = json.loads(out.getvalue())
    assert document["rule"]["key"] == "cpu" and document["eval_interval_s"] == 60
    timeline = document["timeline"]
    assert len(timeline) == 61
    firing = [entry for entry in timeline if entry["firing"]]
    assert {json.dumps(entry["firing"]) for entry in firing} == {json.dumps([{"host": "gw-1", "severity": "high"}])}
    # Samples every minute; true from minute 30, so pending from then and firing two
    # minutes later, for 18 evaluations until the first false sample at minute 50.
    assert len(firing) == 18


@pytest.mark.django_db
def test_rule_id_unknown_is_an_error() -> None:
    with pytest.raises(CommandError, match="no alert rule with id 999999"):
        call_command("test_rule", rule_id=999999, stdout=StringIO())


def replay_rule(rule_id: int, hours: float = 1, until: str | None = None) -> dict:
    out = StringIO()
    call_command("test_rule", rule_id=rule_id, hours=hours, until=until, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_rule_id_replays_a_promql_rule_like_the_same_metric_rule() -> None:
    now = timezone.now()
    start = now - timedelta(hours=1)
    # gw-1 above 80 from minute 30 to 50, gw-2 from minute 55 on (still firing at the end).
    points = [start + timedelta(minutes=m) for m in range(61)]
    store_samples(
        "cpu_usage_percent", {"host": "gw-1"}, [(at, 95.0 if 30 <= m < 50 else 40.0) for m, at in enumerate(points)]
    )
    store_samples(
        "cpu_usage_percent", {"host": "gw-2"}, [(at, 90.0 if m >= 55 else 10.0) for m, at in enumerate(points)]
    )
    store_samples("memory_usage_percent", {"host": "gw-3"}, [(at, 99.0) for at in points])
    metric_rule = make_rule("cpu", duration=120, evaluation_interval=60, severity="high")
    expr_rule = make_rule("cpu-promql", metric="", expr="cpu_usage_percent > 80", duration=120, evaluation_interval=60,
                          severity="high")  # fmt: skip

    # One end for both, so a second ticking over between the replays cannot shift the steps.
    until = now.replace(microsecond=0).isoformat()
    by_metric = replay_rule(metric_rule.id, until=until)
    by_expr = replay_rule(expr_rule.id, until=until)

    assert by_expr["rule"]["key"] == "cpu-promql" and by_expr["eval_interval_s"] == 60
    assert len(by_expr["timeline"]) == 61
    assert by_expr["timeline"] == by_metric["timeline"]
    firing_hosts = [[alert["host"] for alert in entry["firing"]] for entry in by_expr["timeline"]]
    assert firing_hosts.count(["gw-1"]) == 18  # pending at minute 30, firing from 32 to 49
    assert firing_hosts[-1] == ["gw-2"]  # true from minute 55, firing from 57
    assert [{"host": "gw-2", "severity": "high"}] in [entry["pending"] for entry in by_expr["timeline"]]


@pytest.mark.django_db
def test_rule_id_replays_an_aggregating_promql_rule() -> None:
    now = timezone.now()
    start = now - timedelta(hours=1)
    points = [start + timedelta(minutes=m) for m in range(61)]
    # Site north: 1 of 4 devices offline from minute 20 to 40 (25 %); south never.
    for device in range(4):
        offline = device == 0
        values = [(at, 0.0 if offline and 20 <= m < 40 else 1.0) for m, at in enumerate(points)]
        store_samples("device_connectivity", {"site": "north", "device": f"n{device}"}, values)
        store_samples("device_connectivity", {"site": "south", "device": f"s{device}"}, [(at, 1.0) for at in points])
    rule = make_rule(
        "offline-share",
        metric="",
        expr="count by (site) (device_connectivity < 1) / count by (site) (device_connectivity) > 0.2",
        duration=0,
        evaluation_interval=300,
        labels={"team": "fleet"},
    )

    timeline = replay_rule(rule.id)["timeline"]

    assert len(timeline) == 13  # every 5 minutes over the hour, both ends included
    firing = [entry["firing"] for entry in timeline if entry["firing"]]
    assert firing == [[{"site": "north", "team": "fleet", "severity": "medium"}]] * 4  # minutes 20, 25, 30, 35


@pytest.mark.django_db
def test_rule_id_of_a_promql_rule_that_fails_on_the_data_is_an_error() -> None:
    now = timezone.now()
    for name in ("temp_a", "temp_b"):  # the same labels once the names are dropped
        store_samples(name, {"room": "r1"}, [(now - timedelta(minutes=1), 20.0)])
    rule = make_rule("dup", metric="", expr='abs({__name__=~"temp_a|temp_b"}) > 0')

    with pytest.raises(CommandError, match="its expression cannot be evaluated over stored data: vector cannot "
                                           "contain metrics with the same labelset") as exc:  # fmt: skip
        call_command("test_rule", rule_id=rule.id, hours=1, stdout=StringIO())
    assert exc.value.returncode == 1


@pytest.mark.django_db
def test_until_replays_up_to_a_given_time_and_a_bad_one_exits_2() -> None:
    start = timezone.now().replace(microsecond=0) - timedelta(hours=3)
    points = [start + timedelta(minutes=m) for m in range(121)]
    # Above the threshold only in the first hour: replaying that hour fires, the last hour not.
    values = [(at, 95.0 if m < 60 else 10.0) for m, at in enumerate(points)]
    store_samples("cpu_usage_percent", {"host": "gw-1"}, values)
    rule = make_rule("cpu-until", duration=0, evaluation_interval=60)

    first_hour = replay_rule(rule.id, until=(start + timedelta(minutes=59)).isoformat())
    last_hour = replay_rule(rule.id, until=(start + timedelta(minutes=120)).isoformat())

    assert first_hour["to"] == (start + timedelta(minutes=59)).isoformat()
    assert any(entry["firing"] for entry in first_hour["timeline"])
    assert not any(entry["firing"] for entry in last_hour["timeline"][2:])
    with pytest.raises(CommandError) as raised:
        replay_rule(rule.id, until="last tuesday")
    assert raised.value.returncode == 2
    assert "--until 'last tuesday' is not an ISO 8601 time" in str(raised.value)
