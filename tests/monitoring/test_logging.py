"""Logging: the level rule, one line per event naming its component, on stdout and in a
monitoring.log that several processes share and rotate without losing lines."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from monitoring.logconfig import resolve_log_level

EMIT = """
import logging, django
django.setup()
logging.getLogger("health_check").info("check web_health passed in 12 ms")
logging.getLogger("health_check").error("check db_port failed: connection refused")
logging.getLogger("alerting").warning("rule high_cpu_usage fired")
logging.getLogger("notifications").debug("outbox empty")
"""


def run_django(script: str, var_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """Run `script` in a fresh Django process whose files live in `var_dir`."""
    environment = {key: value for key, value in os.environ.items() if key not in ("LOG_LEVEL", "LOG_STREAM")}
    environment |= {"MONITORING_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "config.settings", **env}
    environment.setdefault("REDIS_URL", settings.REDIS_URL)  # no embedded Redis of its own
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize(
    ("env_level", "configured", "expected"),
    [
        ("DEBUG", "ERROR", ("DEBUG", "LOG_LEVEL")),
        ("warn", None, ("WARNING", "LOG_LEVEL")),
        (None, "error", ("ERROR", "the global settings' log_level")),
        ("", "INFO", ("INFO", "the global settings' log_level")),
        (None, "", ("INFO", "the default")),
    ],
)
def test_log_level_comes_from_env_then_config_then_info(env_level, configured, expected):
    assert resolve_log_level(env_level, configured) == expected


def test_an_unknown_log_level_is_refused_with_its_source():
    with pytest.raises(ValueError, match=r"LOG_LEVEL='LOUD' is not a log level"):
        resolve_log_level("LOUD", "INFO")


def test_each_event_is_one_line_naming_its_component_on_stdout_and_in_the_file(tmp_path):
    done = run_django(EMIT, tmp_path, LOG_LEVEL="INFO", LOG_STREAM="stdout")  # as runmonitor's children

    log_lines = (tmp_path / "monitoring.log").read_text().splitlines()
    errors = [line for line in log_lines if " ERROR " in line]  # grep ERROR monitoring.log
    health = [line for line in log_lines if "health_check" in line]  # grep health_check monitoring.log
    assert len(errors) == 1
    assert errors[0].endswith("ERROR health_check check db_port failed: connection refused")
    assert len(health) == 2
    assert any(line.endswith("WARNING alerting rule high_cpu_usage fired") for line in log_lines)
    assert not any("outbox empty" in line for line in log_lines)  # DEBUG is below INFO
    assert "ERROR health_check check db_port failed" in done.stdout


def test_commands_log_to_stderr_so_their_stdout_stays_data(tmp_path):
    done = run_django(EMIT + "print('data only')", tmp_path, LOG_LEVEL="INFO")

    assert done.stdout == "data only\n"
    assert "ERROR health_check check db_port failed" in done.stderr


def test_log_level_from_env_filters_what_is_written(tmp_path):
    run_django(EMIT, tmp_path, LOG_LEVEL="WARNING")

    text = (tmp_path / "monitoring.log").read_text()
    assert "check db_port failed" in text
    assert "rule high_cpu_usage fired" in text
    assert "check web_health passed" not in text


WRITE_MANY = """
import logging, sys
from monitoring.logconfig import SharedRotatingFileHandler
handler = SharedRotatingFileHandler(sys.argv[1], maxBytes=4000, backupCount=1000)
handler.setFormatter(logging.Formatter("%(message)s"))
log = logging.getLogger("ingest")
log.addHandler(handler)
log.setLevel(logging.INFO)
for i in range(int(sys.argv[3])):
    log.info("%s line %05d %s", sys.argv[2], i, "x" * 40)
"""


def test_processes_sharing_the_log_file_rotate_it_without_losing_lines(tmp_path):
    log_file = tmp_path / "monitoring.log"
    per_process, writers = 1500, 4
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITE_MANY, str(log_file), f"p{n}", str(per_process)], cwd=settings.BASE_DIR
        )
        for n in range(writers)
    ]
    assert [process.wait(timeout=60) for process in processes] == [0] * writers

    files = sorted(tmp_path.glob("monitoring.log*"))
    lines = [line for path in files if not path.name.endswith(".lock") for line in path.read_text().splitlines()]
    assert len(files) > 10  # it did rotate, many times
    assert len(lines) == per_process * writers
    assert len(set(lines)) == per_process * writers
