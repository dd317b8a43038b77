"""The outbound policy: webhooks, HTTP checks and scrapes never connect to a denied network,
whether the URL names it, a host name resolves into it or a redirect points at it."""

import ipaddress
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ImproperlyConfigured

from healthchecks.checkers import CheckSpec, run_checks
from healthchecks.choices import CheckKind, HealthStatus
from monitoring import outbound
from monitoring.scrape import ScrapeTarget, scrape_targets
from notifications.choices import ChannelKind, NotificationEvent
from notifications.senders import ChannelInfo, Message, SendError, sender_for

from .servers import http_server

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def send_webhook(url: str) -> str:
    channel = ChannelInfo(id=1, key="hook", name="Hook", kind=ChannelKind.WEBHOOK, settings={"url": url})
    message = Message(
        channel=channel, event=NotificationEvent.TEST, alerts=(), idempotency_key="k1", now=NOW, timeout=3
    )
    return sender_for(channel).send(message)


def http_check(url: str, **config) -> CheckSpec:
    return CheckSpec(id=1, kind=CheckKind.HTTP, timeout=3, config={"url": url, **config})


def test_webhook_to_a_denied_address_is_refused_before_connecting(settings):
    with http_server() as allowed, http_server() as denied:
        settings.MONITORING_OUTBOUND_DENY = []
        send_webhook(f"{allowed.url}/hook")
        assert allowed.paths == ["/hook"]

        settings.MONITORING_OUTBOUND_DENY = ["127.0.0.1/32"]
        with pytest.raises(SendError) as refused:
            send_webhook(f"{denied.url}/hook")
        assert refused.value.permanent  # configuration, not a passing failure: no retries
        assert "outbound connection to 127.0.0.1 refused: 127.0.0.1/32 is in MONITORING_OUTBOUND_DENY" in str(
            refused.value
        )
        assert denied.paths == []  # nothing reached the server


def test_a_host_name_is_checked_on_every_address_it_resolves_to(settings):
    settings.MONITORING_OUTBOUND_DENY = ["127.0.0.0/8", "::1/128"]
    with http_server() as receiver:
        with pytest.raises(SendError, match=r"outbound connection to localhost \(.*\) refused"):
            send_webhook(f"http://localhost:{receiver.port}/hook")
        assert receiver.paths == []


def test_allow_list_admits_only_its_networks(settings):
    with http_server() as receiver:
        settings.MONITORING_OUTBOUND_DENY = []
        settings.MONITORING_OUTBOUND_ALLOW = ["10.0.0.0/8"]
        with pytest.raises(SendError, match="not in MONITORING_OUTBOUND_ALLOW"):
            send_webhook(f"{receiver.url}/hook")
        settings.MONITORING_OUTBOUND_ALLOW = ["127.0.0.0/8"]
        send_webhook(f"{receiver.url}/hook")
        assert receiver.paths == ["/hook"]


def test_http_check_does_not_follow_a_redirect_into_a_denied_address(settings):
    settings.MONITORING_OUTBOUND_DENY = ["127.0.0.2/32"]
    with http_server("127.0.0.2") as inside, http_server(status=302, location=f"{inside.url}/secret") as outside:
        outcome = run_checks([http_check(f"{outside.url}/start")])[0]
        assert outside.paths == ["/start"]
        assert inside.paths == []  # the redirect was refused at connection time
        assert outcome.status == HealthStatus.CRITICAL
        assert "outbound connection to 127.0.0.2 refused: 127.0.0.2/32 is in MONITORING_OUTBOUND_DENY" in (
            outcome.message
        )

        settings.MONITORING_OUTBOUND_DENY = []
        followed = run_checks([http_check(f"{outside.url}/start")])[0]
        assert followed.status == HealthStatus.HEALTHY
        assert inside.paths == ["/secret"]


def test_http_check_to_a_denied_ip_literal_is_refused(settings):
    # aiohttp resolves no IP literal: the socket factory is what catches it.
    settings.MONITORING_OUTBOUND_DENY = ["127.0.0.1/32"]
    with http_server() as server:
        outcome = run_checks([http_check(f"{server.url}/ok")])[0]
        assert outcome.status == HealthStatus.CRITICAL
        assert "refused: 127.0.0.1/32 is in MONITORING_OUTBOUND_DENY" in outcome.message
        assert server.paths == []


def test_scrape_does_not_follow_a_redirect_into_a_denied_address(settings):
    settings.MONITORING_OUTBOUND_DENY = ["127.0.0.2/32"]
    body = b"temperature_celsius 21.5\n"
    with (
        http_server("127.0.0.2", body=body) as inside,
        http_server(status=301, location=f"{inside.url}/metrics") as outside,
    ):
        target = ScrapeTarget(id=1, url=f"{outside.url}/metrics", timeout=3, labels={"job": "t"})
        result = scrape_targets([target])[0]
        assert not result.up
        assert "outbound connection to 127.0.0.2 refused" in result.error
        assert inside.paths == []

        settings.MONITORING_OUTBOUND_DENY = []
        assert scrape_targets([target])[0].up
        assert inside.paths == ["/metrics"]


def test_webhook_redirects_are_never_followed(settings):
    settings.MONITORING_OUTBOUND_DENY = []
    with http_server("127.0.0.2") as inside, http_server(status=307, location=f"{inside.url}/x") as outside:
        with pytest.raises(SendError, match="HTTP 307"):
            send_webhook(f"{outside.url}/hook")
        assert inside.paths == []


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("169.254.169.254", True),
        ("::ffff:169.254.169.254", True),  # the IPv4 address written as IPv6
        ("fd00:ec2::254", True),
        ("169.254.169.253", False),
        ("10.1.2.3", False),
    ],
)
def test_default_deny_list_covers_the_cloud_metadata_addresses(address, refused):
    from django.conf import settings

    policy = outbound.OutboundPolicy(
        outbound.parse_networks(settings.MONITORING_OUTBOUND_DENY, setting="MONITORING_OUTBOUND_DENY")
    )
    assert (policy.refusal(ipaddress.ip_address(address)) is not None) is refused


def test_malformed_network_fails_loudly_naming_the_setting(settings):
    settings.MONITORING_OUTBOUND_DENY = ["10.0.0.0/33"]
    with pytest.raises(ImproperlyConfigured, match="MONITORING_OUTBOUND_DENY: '10.0.0.0/33' is not a network"):
        outbound.check_address("10.0.0.1")
