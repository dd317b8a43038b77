import os
import stat

import pytest

from healthchecks.validation import check_config_errors, parse_expected_status


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "check.sh"
    path.write_text("#!/bin/sh\necho OK\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("http", {"url": "http://127.0.0.1:8000/health", "method": "GET", "expected_status": 200}),
        ("http", {"method": "GET", "expected_status": 200, "expected_content": "healthy"}),  # url from target
        ("http", {"url": "https://[::1]:8443/", "expected_status": ["2xx", 301, "400-404"], "verify_tls": False}),
        ("tcp", {"host": "localhost", "port": 5432}),
        ("ping", {"host": "8.8.8.8", "packet_count": 3}),
        ("heartbeat", {}),
        ("tls_certificate", {"host": "example.org", "warning_days": 30, "critical_days": 7}),
        ("dns", {"name": "localhost", "record_type": "AAAA", "expected": ["::1"]}),
        ("custom", {"command": ["true"]}),
    ],
)
def test_valid_configs_have_no_errors(kind, config):
    assert check_config_errors(kind, config) == []


def test_custom_command_that_exists_and_is_executable_is_valid(script):
    assert check_config_errors("custom", {"command": f"{script} --warn 5", "timeout": 60}) == []


def test_custom_command_missing_is_refused_with_its_name():
    errors = check_config_errors("custom", {"command": "/usr/local/bin/check_script.sh", "timeout": 60})
    assert errors == ["custom command '/usr/local/bin/check_script.sh' does not exist or is not executable"]


def test_custom_command_not_executable_is_refused(tmp_path):
    path = tmp_path / "plain.sh"
    path.write_text("echo hi\n")
    os.chmod(path, 0o644)
    if os.geteuid() == 0:
        # root may execute anything with an x bit; a file with none stays refused.
        assert not os.access(path, os.X_OK)
    assert check_config_errors("custom", {"command": [str(path)]}) == [
        f"custom command {str(path)!r} does not exist or is not executable"
    ]


@pytest.mark.parametrize(
    ("kind", "config", "reason"),
    [
        ("http", {"url": "htp:/x"}, "url 'htp:/x' is not a valid http(s) URL"),
        ("http", {"url": "http://"}, "url 'http://' is not a valid http(s) URL"),
        ("http", {"url": "http://host:99999/"}, "url 'http://host:99999/' is not a valid http(s) URL"),
        ("http", {"url": "http://x/", "method": "FETCH"}, "method 'FETCH' is not one of"),
        ("http", {"url": "http://x/", "expected_status": "abc"}, "expected_status 'abc' is not a status code"),
        ("http", {"url": "http://x/", "expected_regex": "("}, "expected_regex '(' is not a valid regular expression"),
        ("http", {"url": "http://x/", "expected_stauts": 200}, "unknown setting(s) 'expected_stauts'"),
        ("tcp", {"host": "localhost", "port": 70000}, "port 70000 is not a port number"),
        ("tcp", {"host": "bad host!", "port": 1}, "host 'bad host!' is not a valid host name or IP address"),
        ("ping", {"host": "127.0.0.1", "packet_count": 0}, "packet_count must be greater than 0"),
        ("ping", {"host": "127.0.0.1", "packet_count": 1000}, "packet_count must be at most 100"),
        ("dns", {"name": "localhost", "record_type": "BOGUS"}, "record_type 'BOGUS' is not one of"),
        ("dns", {"name": "localhost", "nameserver": "dns.example"}, "nameserver 'dns.example' is not an IP address"),
        ("tls_certificate", {"host": "h", "warning_days": 5, "critical_days": 10}, "critical_days (10) must not be"),
        ("custom", {}, "command is required"),
        ("custom", {"command": "'unterminated"}, 'custom command "\'unterminated" cannot be split'),
        ("nonsense", {}, "check type 'nonsense' is not one of"),
    ],
)
def test_invalid_configs_say_why(kind, config, reason):
    errors = check_config_errors(kind, config)
    assert any(e.startswith(reason) for e in errors), errors


def test_target_endpoint_supplies_url_and_host_when_given():
    assert check_config_errors("http", {}, endpoint="http://localhost:3002/health") == []
    assert check_config_errors("http", {}, endpoint="") == [
        "url is required (in the check's config or its target's endpoint)"
    ]
    assert check_config_errors("tcp", {}, endpoint="localhost:5432") == []
    assert check_config_errors("tcp", {}, endpoint="localhost") == [
        "port is required (in the check's config or its target's endpoint as host:port)"
    ]


def test_expected_status_forms():
    assert parse_expected_status(200) == [(200, 200)]
    assert parse_expected_status(["2xx", "301-302", 404]) == [(200, 299), (301, 302), (404, 404)]
    with pytest.raises(ValueError):
        parse_expected_status([])
    with pytest.raises(ValueError):
        parse_expected_status(700)
