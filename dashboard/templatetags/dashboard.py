"""Small formatting helpers of the dashboard's templates."""

import math
from collections.abc import Mapping

from django import template
from django.utils import dateformat
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timezone import template_localtime

register = template.Library()

# Severity and status are shown as colour plus text, never colour alone.
SEVERITY_ICONS = {"critical": "▲▲", "high": "▲", "medium": "●", "low": "○"}
STATUS_ICONS = {
    "healthy": "✓",
    "warning": "!",
    "critical": "✕",
    "unknown": "?",
    "up": "✓",
    "down": "✕",
    "degraded": "!",
}


@register.simple_tag
def severity(value: str) -> str:
    return format_html(
        '<span class="badge sev-{}"><span aria-hidden="true">{}</span> {}</span>',
        value,
        SEVERITY_ICONS.get(value, ""),
        value,
    )


@register.simple_tag
def status(value: str, text: str = "") -> str:
    return format_html(
        '<span class="badge st-{}"><span aria-hidden="true">{}</span> {}</span>',
        value,
        STATUS_ICONS.get(value, "·"),
        text or value,
    )


@register.simple_tag
def state(value: str, display: str = "") -> str:
    return format_html('<span class="badge state-{}">{}</span>', value, display or value)


@register.filter
def num(value: object) -> str:
    """A measured value, short: 3 significant decimals at most, none for big numbers."""
    if value is None or value == "":
        return "–"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number == int(number) and abs(number) < 1e15:
        return f"{int(number):,}"
    if abs(number) >= 100:
        return f"{number:,.1f}"
    return f"{number:.3g}"


@register.filter
def ms(seconds: object) -> str:
    if seconds is None:
        return "–"
    return f"{float(seconds) * 1000:,.0f} ms"


@register.filter
def pct(value: object) -> str:
    if value is None:
        return "–"
    return f"{float(value):.2f} %"


@register.filter
def labels(value: Mapping | None) -> str:
    if not value:
        return ""
    return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))


@register.simple_tag(takes_context=True)
def export_url(context: template.Context) -> str:
    request = context["request"]
    query = request.GET.copy()
    query["format"] = "json"
    return f"{request.path}?{query.urlencode()}"


@register.simple_tag
def when(value: object) -> str:
    """A time as dashboard/_time.html writes it (local time shown, ISO 8601 and the zone in
    the attributes, a dash without one), built here: as an inclusion tag it cost a context
    and a template render per row, the larger part of a 100-row page's rendering."""
    if not value:
        return mark_safe('<span class="muted">–</span>')  # noqa: S308 (a constant)
    local = template_localtime(value)
    shown = dateformat.format(local, "Y-m-d H:i:s")
    iso, zone = dateformat.format(local, "c"), dateformat.format(local, "e")
    return format_html('<time datetime="{}" title="{} {}">{}</time>', iso, shown, zone, shown)


@register.filter
def get_item(mapping: Mapping | None, key: str) -> object:
    return (mapping or {}).get(key)
