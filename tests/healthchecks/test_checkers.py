"""The checkers against real servers on 127.0.0.1 (no database)."""

import datetime as dt
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

from healthchecks.checkers import CheckSpec, RunOptions, run_checks
from healthchecks.choices import HealthStatus, PingKind

NOW = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)


def run_one(kind: str, config: dict, *, timeout: float = 5.0, options: RunOptions | None = None, **spec):
    check = CheckSpec(id=1, kind=kind, timeout=timeout, config=config, **spec)
    [outcome] = run_checks([check], dt.datetime.now(dt.UTC), options or RunOptions())
    return outcome


# --- http ---------------------------------------------------------------------------------------


def test_http_check_healthy_on_200_with_expected_content(http_server):
    outcome = run_one("http", {"url": f"{http_server.base_url}/ok", "expected_content": "healthy"})
    assert outcome.status == HealthStatus.HEALTHY
    assert outcome.details["status_code"] == 200
    assert outcome.message.startswith("HTTP 200 in ")
    assert 0 < outcome.response_time < 5


def test_http_check_critical_on_500_with_body_excerpt(http_server):
    outcome = run_one("http", {"url": f"{http_server.base_url}/error", "expected_status": 200})
    assert outcome.status == HealthStatus.CRITICAL
    assert outcome.message == "HTTP 500 Internal Server Error (expected 200)"
    assert outcome.details["body_excerpt"] == "internal failure: database unreachable"


def test_http_check_critical_on_wrong_content(http_server):
    outcome = run_one("http", {"url": f"{http_server.base_url}/wrong", "expected_content": "healthy"})
    assert outcome.status == HealthStatus.CRITICAL
    assert "does not contain 'healthy'" in outcome.message
    assert outcome.details["body_excerpt"] == "maintenance mode"


def test_http_check_matches_a_regex(http_server):
    good = run_one("http", {"url": f"{http_server.base_url}/ok", "expected_regex": r'"status":\s*"healthy"'})
    bad = run_one("http", {"url": f"{http_server.base_url}/wrong", "expected_regex": r"^healthy$"})
    assert good.status == HealthStatus.HEALTHY
    assert bad.status == HealthStatus.CRITICAL and "does not match" in bad.message


def test_http_check_warns_when_slower_than_max_response_time(http_server):
    outcome = run_one("http", {"url": f"{http_server.base_url}/slow?ms=300", "max_response_time": 0.1})
    assert outcome.status == HealthStatus.WARNING
    assert "slower than 0.1 s" in outcome.message
    assert outcome.response_time >= 0.3


def test_http_check_times_out_on_a_slow_server(http_server):
    started = time.monotonic()
    outcome = run_one("http", {"url": f"{http_server.base_url}/slow?ms=3000"}, timeout=0.5)
    assert outcome.status == HealthStatus.CRITICAL
    assert "timed out" in outcome.message
    assert time.monotonic() - started < 1.5


def test_http_check_follows_redirects_or_not(http_server):
    followed = run_one("http", {"url": f"{http_server.base_url}/redirect"})
    assert followed.status == HealthStatus.HEALTHY
    assert followed.details["redirects"] == 1 and followed.details["url"].endswith("/ok")
    kept = run_one("http", {"url": f"{http_server.base_url}/redirect", "follow_redirects": False})
    assert kept.status == HealthStatus.CRITICAL and kept.details["status_code"] == 302
    expected = run_one(
        "http", {"url": f"{http_server.base_url}/redirect", "follow_redirects": False, "expected_status": "300-399"}
    )
    assert expected.status == HealthStatus.HEALTHY


def test_http_check_sends_method_headers_and_body(http_server):
    outcome = run_one(
        "http",
        {
            "url": f"{http_server.base_url}/echo",
            "method": "POST",
            "headers": {"X-Probe": "fleet-7"},
            "body": {"ping": 1},
            "expected_content": "fleet-7",
        },
    )
    assert outcome.status == HealthStatus.HEALTHY
    received = http_server.requests[-1]
    assert received["method"] == "POST"
    assert received["headers"]["X-Probe"] == "fleet-7"
    assert json.loads(received["body"]) == {"ping": 1}


def test_http_check_takes_its_url_from_the_target_endpoint(http_server):
    outcome = run_one("http", {"expected_status": 200}, endpoint=f"{http_server.base_url}/ok")
    assert outcome.status == HealthStatus.HEALTHY


def test_http_check_connection_refused_is_readable(closed_port):
    outcome = run_one("http", {"url": f"http://127.0.0.1:{closed_port}/"})
    assert outcome.status == HealthStatus.CRITICAL
    assert outcome.message == "connection refused"


def test_https_check_verifies_against_a_ca_file_or_not(https_server, self_signed):
    url = f"{https_server.base_url}/ok"
    untrusted = run_one("http", {"url": url})
    assert untrusted.status == HealthStatus.CRITICAL
    assert "certificate verify failed" in untrusted.message or "self-signed" in untrusted.message
    trusted = run_one("http", {"url": url, "ca_file": str(self_signed.cert_file)})
    assert trusted.status == HealthStatus.HEALTHY
    unverified = run_one("http", {"url": url, "verify_tls": False})
    assert unverified.status == HealthStatus.HEALTHY


def test_black_hole_http_check_ends_as_a_timeout_within_timeout_plus_one(black_hole):
    started = time.monotonic()
    outcome = run_one("http", {"url": f"http://127.0.0.1:{black_hole.port}/"}, timeout=1.0)
    elapsed = time.monotonic() - started
    assert outcome.status == HealthStatus.CRITICAL
    assert "timed out" in outcome.message
    assert 1.0 <= elapsed < 2.0


# --- tcp ------------------------------------------------------------------------------------------


def test_tcp_check_connects_to_a_listener(tcp_listener):
    host, port = tcp_listener
    outcome = run_one("tcp", {"host": host, "port": port})
    assert outcome.status == HealthStatus.HEALTHY
    assert outcome.details == {"address": "127.0.0.1", "port": port}


def test_tcp_check_takes_host_and_port_from_the_endpoint(tcp_listener):
    host, port = tcp_listener
    assert run_one("tcp", {}, endpoint=f"{host}:{port}").status == HealthStatus.HEALTHY


def test_tcp_check_on_a_closed_port_is_critical(closed_port):
    outcome = run_one("tcp", {"host": "127.0.0.1", "port": closed_port})
    assert outcome.status == HealthStatus.CRITICAL
    assert outcome.message == "connection refused"


def test_tcp_check_over_ipv6():
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.fail(f"this host has no IPv6 loopback to test on: {exc}")
    with server:
        outcome = run_one("tcp", {"host": "::1", "port": server.getsockname()[1]})
    assert outcome.status == HealthStatus.HEALTHY
    assert outcome.details["address"] == "::1"


def test_tcp_check_unresolvable_host_says_so():
    outcome = run_one("tcp", {"host": "no-such-host.invalid", "port": 80})
    assert outcome.status == HealthStatus.CRITICAL
    assert outcome.message.startswith("cannot resolve host")


# --- tls certificate ------------------------------------------------------------------------------


def test_tls_certificate_expiring_in_5_days_is_critical_under_7(https_server, self_signed):
    port = https_server.server_address[1]
    config = {"host": "127.0.0.1", "port": port, "ca_file": str(self_signed.cert_file)}
    outcome = run_one("tls_certificate", config)
    assert outcome.status == HealthStatus.CRITICAL
    assert 4.9 < outcome.details["expiry_days"] <= 5.0
    assert outcome.message.startswith("certificate expires in 5.0 days (critical under 7)")
    warning = run_one("tls_certificate", {**config, "critical_days": 3, "warning_days": 30})
    assert warning.status == HealthStatus.WARNING
    healthy = run_one("tls_certificate", {**config, "critical_days": 1, "warning_days": 2})
    assert healthy.status == HealthStatus.HEALTHY
    assert "localhost" in healthy.details["san"]


def test_tls_certificate_chain_error_fails_and_still_reports_expiry(https_server):
    port = https_server.server_address[1]
    outcome = run_one("tls_certificate", {"host": "127.0.0.1", "port": port})
    assert outcome.status == HealthStatus.CRITICAL
    assert outcome.message.startswith("TLS certificate verification failed: self-signed certificate")
    assert 4.9 < outcome.details["expiry_days"] <= 5.0


def test_tls_certificate_hostname_mismatch_fails(https_server, self_signed):
    port = https_server.server_address[1]
    config = {"host": "127.0.0.1", "port": port, "ca_file": str(self_signed.cert_file), "server_name": "wrong.test"}
    outcome = run_one("tls_certificate", config)
    assert outcome.status == HealthStatus.CRITICAL
    assert "Hostname mismatch" in outcome.message and "wrong.test" in outcome.message


def test_tls_certificate_without_verification_reports_expiry_only(https_server):
    port = https_server.server_address[1]
    outcome = run_one("tls_certificate", {"host": "127.0.0.1", "port": port, "verify": False, "critical_days": 2})
    assert outcome.status == HealthStatus.WARNING
    assert outcome.details["subject"] == "CN=localhost"


# --- dns --------------------------------------------------------------------------------------------


def test_dns_resolves_localhost_with_the_system_resolver():
    outcome = run_one("dns", {"name": "localhost", "record_type": "A", "expected": ["127.0.0.1"]})
    assert outcome.status == HealthStatus.HEALTHY
    assert "127.0.0.1" in outcome.details["answers"]
    assert outcome.details["resolver"] == "system resolver"


def test_dns_expected_answer_missing_is_critical():
    outcome = run_one("dns", {"name": "localhost", "expected": "10.9.9.9"})
    assert outcome.status == HealthStatus.CRITICAL
    assert "expected 10.9.9.9 missing" in outcome.message


def test_dns_unknown_name_is_critical():
    outcome = run_one("dns", {"name": "no-such-host.invalid"})
    assert outcome.status == HealthStatus.CRITICAL
    assert outcome.message.startswith("cannot resolve 'no-such-host.invalid'")


def test_dns_other_record_types_against_a_chosen_nameserver(dns_server):
    base = {"nameserver": "127.0.0.1", "port": dns_server.port}
    cname = run_one("dns", {**base, "name": "www.fleet.test", "record_type": "CNAME", "expected": "edge.fleet.test"})
    assert cname.status == HealthStatus.HEALTHY, cname.message
    assert cname.details["answers"] == ["edge.fleet.test."]
    mx = run_one("dns", {**base, "name": "fleet.test", "record_type": "MX", "expected": ["10 mail.fleet.test"]})
    assert mx.status == HealthStatus.HEALTHY
    a = run_one("dns", {**base, "name": "edge.fleet.test", "expected": ["192.0.2.11"]})
    assert a.status == HealthStatus.HEALTHY and a.details["answers"] == ["192.0.2.10", "192.0.2.11"]
    missing = run_one("dns", {**base, "name": "gone.fleet.test"})
    assert missing.status == HealthStatus.CRITICAL and missing.message == "gone.fleet.test does not exist (NXDOMAIN)"
    assert ("www.fleet.test", "CNAME") in dns_server.queries


# --- ping ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["auto", "command"])
def test_ping_127_0_0_1(method):
    outcome = run_one("ping", {"host": "127.0.0.1", "packet_count": 3}, options=RunOptions(ping_method=method))
    assert outcome.status == HealthStatus.HEALTHY, outcome.message
    assert outcome.details["sent"] == 3 and outcome.details["received"] == 3
    assert outcome.details["packet_loss_ratio"] == 0
    assert outcome.details["rtt_avg_ms"] < 100
    if method == "command":
        assert outcome.details["method"] == "ping-command"
    else:
        assert outcome.details["method"] in ("icmp-socket", "icmp-raw", "ping-command")


def test_ping_as_an_unprivileged_user(tmp_path):
    """A normal user may open no raw socket; the checker still pings (through an
    unprivileged ICMP socket where the kernel allows, else the system `ping`)."""
    if os.geteuid() != 0:
        pytest.fail("run the suite as root so this test can drop to an unprivileged user")
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop privileges"
    root = Path(__file__).resolve().parents[2]
    script = (
        "import datetime, json;"
        "from healthchecks.checkers import CheckSpec, run_checks;"
        "[o] = run_checks([CheckSpec(id=1, kind='ping', timeout=5, config={'host': '127.0.0.1', 'packet_count': 2})],"
        " datetime.datetime.now(datetime.UTC));"
        "print(json.dumps({'status': o.status, 'method': o.details.get('method'), 'message': o.message}))"
    )
    import subprocess

    completed = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", script],
        cwd=root,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(root), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["status"] == "healthy", result
    assert result["method"] in ("icmp-socket", "ping-command")


# --- custom command ----------------------------------------------------------------------------------


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(
    ("code", "status"),
    [(0, HealthStatus.HEALTHY), (1, HealthStatus.WARNING), (2, HealthStatus.CRITICAL), (3, HealthStatus.CRITICAL)],
)
def test_custom_command_exit_codes_follow_nagios(tmp_path, code, status):
    path = script(tmp_path, "check.sh", f'echo "STATE {code} - disk 42% | used=42%;80;90"\necho detail\nexit {code}\n')
    outcome = run_one("custom", {"command": path})
    assert outcome.status == status
    assert outcome.message == f"STATE {code} - disk 42%"
    assert outcome.details["exit_code"] == code
    assert outcome.details["perfdata"] == "used=42%;80;90"


def test_custom_command_string_is_split_into_arguments_never_run_by_a_shell(tmp_path):
    canary = tmp_path / "canary"
    command = f"/bin/echo hello; touch {canary} && touch {canary} $(touch {canary}) `touch {canary}` | cat"
    outcome = run_one("custom", {"command": command})
    assert outcome.status == HealthStatus.HEALTHY
    assert outcome.message == f"hello; touch {canary} && touch {canary} $(touch {canary}) `touch {canary}`"
    assert not canary.exists()


def test_custom_command_list_arguments_are_literal(tmp_path):
    canary = tmp_path / "canary"
    outcome = run_one("custom", {"command": ["/bin/echo", f"; touch {canary}", "&&", f"$(touch {canary})"]})
    assert outcome.message == f"; touch {canary} && $(touch {canary})"
    assert not canary.exists()


def test_custom_command_that_hangs_is_killed_with_its_whole_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time;"
        "child = subprocess.Popen(['sleep', '60']);"
        "open(sys.argv[1], 'w').write(str(child.pid));"
        "time.sleep(60)"
    )
    started = time.monotonic()
    outcome = run_one("custom", {"command": [sys.executable, "-c", code, str(pid_file)]}, timeout=1.0)
    assert time.monotonic() - started < 2.0
    assert outcome.status == HealthStatus.CRITICAL
    assert outcome.message == "timed out after 1 s"
    child = int(pid_file.read_text())
    time.sleep(0.2)
    assert not _alive(child), "the command's child survived the timeout"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie waits only for its parent to reap it


def test_custom_command_output_is_capped(tmp_path):
    limit = 64 * 1024
    code = "import sys; sys.stdout.write('OK ' + 'x' * (10 * 1024 * 1024)); sys.stderr.write('e' * 100000)"
    outcome = run_one("custom", {"command": [sys.executable, "-c", code]}, options=RunOptions(output_limit=limit))
    assert outcome.status == HealthStatus.HEALTHY
    assert outcome.details["output_truncated"] is True
    assert len(outcome.message) <= 1000
    assert len(outcome.details["stdout"]) <= 301 and len(outcome.details["stderr"]) <= 301


def test_custom_command_sees_none_of_our_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/prod")
    outcome = run_one("custom", {"command": [sys.executable, "-c", "import os; print(os.environ.get('DATABASE_URL'))"]})
    assert outcome.message == "None"


def test_custom_command_that_does_not_exist_is_critical(tmp_path):
    outcome = run_one("custom", {"command": str(tmp_path / "missing.sh")})
    assert outcome.status == HealthStatus.CRITICAL
    assert outcome.message == f"custom command {str(tmp_path / 'missing.sh')!r} does not exist"


def test_custom_command_background_child_does_not_hold_the_check(tmp_path):
    path = script(tmp_path, "bg.sh", "sleep 30 &\necho started\nexit 0\n")
    started = time.monotonic()
    outcome = run_one("custom", {"command": path}, timeout=10)
    assert outcome.status == HealthStatus.HEALTHY and outcome.message == "started"
    assert time.monotonic() - started < 3


# --- heartbeat -------------------------------------------------------------------------------------------


def heartbeat(now: dt.datetime, **state):
    spec = CheckSpec(id=1, kind="heartbeat", timeout=5, period=60, grace=30, created_at=now - dt.timedelta(hours=1))
    spec = CheckSpec(**{**spec.__dict__, **state})
    [outcome] = run_checks([spec], now)
    return outcome


def test_heartbeat_on_time_is_healthy():
    outcome = heartbeat(NOW, last_ping_at=NOW - dt.timedelta(seconds=80), last_ping_kind=PingKind.SUCCESS)
    assert outcome.status == HealthStatus.HEALTHY
    assert outcome.response_time is None


def test_heartbeat_late_is_critical():
    outcome = heartbeat(NOW, last_ping_at=NOW - dt.timedelta(seconds=91), last_ping_kind=PingKind.SUCCESS)
    assert outcome.status == HealthStatus.CRITICAL
    assert outcome.message == "late: last ping 91 s ago (expected every 60 s, 30 s grace)"


def test_heartbeat_fail_ping_is_critical_even_when_recent():
    outcome = heartbeat(NOW, last_ping_at=NOW - dt.timedelta(seconds=5), last_ping_kind=PingKind.FAIL)
    assert outcome.status == HealthStatus.CRITICAL
    assert "reported a failure" in outcome.message


def test_heartbeat_never_pinged_waits_then_goes_down():
    fresh = heartbeat(NOW, created_at=NOW - dt.timedelta(seconds=30))
    assert fresh.status == HealthStatus.UNKNOWN
    old = heartbeat(NOW, created_at=NOW - dt.timedelta(seconds=200))
    assert old.status == HealthStatus.CRITICAL


def test_heartbeat_started_job_must_finish_within_grace():
    running = heartbeat(
        NOW,
        last_ping_at=NOW - dt.timedelta(seconds=50),
        last_ping_kind=PingKind.SUCCESS,
        last_start_at=NOW - dt.timedelta(seconds=40),
    )
    assert running.status == HealthStatus.CRITICAL and "no success ping within" in running.message
    within = heartbeat(
        NOW,
        last_ping_at=NOW - dt.timedelta(seconds=50),
        last_ping_kind=PingKind.SUCCESS,
        last_start_at=NOW - dt.timedelta(seconds=10),
    )
    assert within.status == HealthStatus.HEALTHY


# --- the runner ------------------------------------------------------------------------------------------


def test_unknown_kind_is_an_unknown_result():
    assert run_one("carrier_pigeon", {}).status == HealthStatus.UNKNOWN


def test_checks_run_concurrently_within_the_limit(http_server):
    checks = [
        CheckSpec(id=i, kind="http", timeout=5, config={"url": f"{http_server.base_url}/slow?ms=300"})
        for i in range(20)
    ]
    http_server.max_in_flight = 0
    outcomes = run_checks(checks, dt.datetime.now(dt.UTC), RunOptions(concurrency=10))
    assert [o.check_id for o in outcomes] == list(range(20))
    assert all(o.status == HealthStatus.HEALTHY for o in outcomes)
    # The server saw them side by side, and never more than the limit at once.
    assert 2 <= http_server.max_in_flight <= 10
