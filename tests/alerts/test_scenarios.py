"""Every scenario file (checked against Prometheus' promtool) replays through
`manage.py test_rule --scenario` to exactly its `expected` firing sets."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "alert-scenarios"
# The shared folder beside the clone, when there is one: its files must pass too.
SHARED = Path(settings.BASE_DIR).parent / "shared" / "alert-scenarios"
SCENARIOS = sorted(FIXTURES.glob("*.json")) + (sorted(SHARED.glob("*.json")) if SHARED.is_dir() else [])


def label_sets(alerts: list[dict[str, str]]) -> set[frozenset[tuple[str, str]]]:
    return {frozenset(labels.items()) for labels in alerts}


def test_the_six_scenarios_are_committed() -> None:
    assert {path.name for path in FIXTURES.glob("*.json")} >= {
        "cpu-high-for-5m.json",
        "flap-resets-pending.json",
        "gap-within-lookback.json",
        "matcher-env.json",
        "ne-firmware.json",
        "service-down-two-targets.json",
    }


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda path: f"{path.parent.parent.name}/{path.name}")
def test_scenario_replays_to_its_expected_firing_sets(path: Path) -> None:
    scenario = json.loads(path.read_text())
    out, err = StringIO(), StringIO()
    call_command("test_rule", scenario=str(path), stdout=out, stderr=err)  # raises CommandError on a difference

    timeline = json.loads(out.getvalue())["timeline"]
    assert [entry["t"] for entry in timeline] == list(range(0, scenario["end_s"] + 1, scenario["eval_interval_s"]))
    by_time = {entry["t"]: entry for entry in timeline}
    for expected in scenario["expected"]:
        assert label_sets(by_time[expected["t"]]["firing"]) == label_sets(expected["firing"]), expected["t"]
    assert err.getvalue() == ""


def test_scenario_output_shows_pending_alerts_with_series_labels_and_severity() -> None:
    out = StringIO()
    call_command("test_rule", scenario=str(FIXTURES / "cpu-high-for-5m.json"), stdout=out)
    timeline = json.loads(out.getvalue())["timeline"]
    assert timeline[0] == {"t": 0, "firing": [], "pending": []}
    assert timeline[1] == {"t": 60, "firing": [], "pending": [{"host": "gw-1", "severity": "warning"}]}
    assert timeline[6]["pending"] == [] and timeline[6]["firing"] == [{"host": "gw-1", "severity": "warning"}]
    # After the dip at 480 the alert is pending again from 540, and not yet for 300 s by 720.
    assert [entry["pending"] != [] for entry in timeline[8:]] == [False, True, True, True, True]
