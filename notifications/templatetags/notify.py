"""Filters for notification templates: numbers as people read them, label sets, and the
escaping Slack's mrkdwn needs."""

from collections.abc import Mapping

from django import template

register = template.Library()


@register.filter
def value(number: float | None) -> str:
    """12.5 -> "12.5", 3.0 -> "3", None -> "-"."""
    if number is None:
        return "-"
    try:
        return f"{float(number):g}"
    except (TypeError, ValueError):
        return str(number)


@register.filter
def labels(mapping: Mapping | None) -> str:
    """{"host": "a", "env": "prod"} -> "env=prod, host=a"."""
    if not mapping:
        return ""
    return ", ".join(f"{k}={v}" for k, v in sorted(mapping.items()))


@register.filter
def slack(text: object) -> str:
    """Escape &, < and > as Slack asks, so a label cannot turn into a link or a mention."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
