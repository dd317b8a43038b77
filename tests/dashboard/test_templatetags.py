"""The dashboard's template helpers that write markup."""

from datetime import UTC, datetime

from django.template import Context, Template


def test_when_writes_a_time_element_with_iso_time_and_zone(settings) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    template = Template("{% load dashboard %}{% when at %}|{% when none %}")
    html = template.render(Context({"at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "none": None}))
    assert html == (
        '<time datetime="2026-01-02T04:04:05+01:00" title="2026-01-02 04:04:05 CET">2026-01-02 04:04:05</time>'
        '|<span class="muted">–</span>'
    )
