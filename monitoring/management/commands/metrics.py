"""`manage.py metrics`: the original CLI's metrics command. Lists series with their last
value, or with --hours summarises each series over that range; --format json prints the
body `GET /api/metrics` answers with the same parameters."""

import math
from datetime import UTC, datetime

from rest_framework.exceptions import ValidationError

from monitoring.api_queries import parse_query, run_query
from monitoring.cli import Column, MonitoringCommand, positive_int, usage_error

LIST_COLUMNS = [
    Column("metric", "Metric"),
    Column("labels", "Labels"),
    Column("last_value", "Last value", justify="right"),
    Column("last_time", "Last sample"),
]
RANGE_COLUMNS = [
    Column("metric", "Metric"),
    Column("labels", "Labels"),
    Column("points", "Points", justify="right"),
    Column("min", "Min", justify="right"),
    Column("avg", "Avg", justify="right"),
    Column("max", "Max", justify="right"),
    Column("last_value", "Last", justify="right"),
    Column("last_time", "Last sample"),
]


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


def _number(value):
    return float(value.replace("Inf", "inf")) if isinstance(value, str) else value


def summarise(series: dict) -> dict:
    """A series of a range body as one table row: its min, sample-weighted average and
    max over the range (raw points count 1 each)."""
    points = series["points"]
    lows = [_number(p.get("min", p["value"])) for p in points]
    highs = [_number(p.get("max", p["value"])) for p in points]
    weights = [p.get("count", 1) for p in points]
    total = sum(weights)
    weighted = math.fsum(_number(p["value"]) * w for p, w in zip(points, weights, strict=True))
    return {
        "metric": series["metric"],
        "labels": series["labels"],
        "points": len(points),
        "min": min(lows, default=None),
        "avg": weighted / total if total else None,
        "max": max(highs, default=None),
        "last_value": series["last_value"],
        "last_time": _time(series["last_timestamp"]),
    }


class Command(MonitoringCommand):
    help = (
        "Show stored metrics.\n"
        "  manage.py metrics                                  every series with its last value\n"
        "  manage.py metrics --metric cpu_usage_percent --hours 24\n"
        "  manage.py metrics --metric up --label job:node --format json"
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--metric", help="Exact metric name. E.g. --metric cpu_usage_percent")
        parser.add_argument(
            "--label",
            action="append",
            default=[],
            metavar="KEY:VALUE",
            help="Exact label matcher, repeatable. E.g. --label host:gw-1",
        )
        parser.add_argument(
            "--hours", type=float, metavar="N", help="Summarise the last N hours (json: their points). E.g. --hours 24"
        )
        parser.add_argument(
            "--step",
            type=float,
            metavar="SECONDS",
            help="With --hours: bucket size in seconds for the points. E.g. --step 300",
        )
        parser.add_argument(
            "--limit",
            type=positive_int,
            metavar="N",
            help="At most this many series (default 100; 20 with --hours). E.g. --limit 50",
        )
        self.add_format_argument(parser)

    def handle(self, *args, **options) -> None:
        params = {"metric": options["metric"], "hours": options["hours"], "step": options["step"]}
        params = {key: str(value) for key, value in params.items() if value is not None}
        if options["label"]:
            params["label"] = options["label"]
        if options["limit"]:
            params["limit"] = str(options["limit"])
        try:
            body, _, _ = run_query(parse_query(params))
        except ValidationError as exc:
            parameter, errors = next(iter(exc.detail.items()))
            raise usage_error(f"--{parameter}: {' '.join(str(error) for error in errors)}") from None
        if options["format"] == "json":
            self.emit_json(body)
            return
        shown = len(body["metrics"])
        more = f" (first {shown} of {body['count']}; use --limit)" if shown < body["count"] else ""
        if options["hours"] is None:
            rows = [{**series, "last_time": _time(series["last_timestamp"])} for series in body["metrics"]]
            self.emit(rows, LIST_COLUMNS, options["format"], title=f"Series{more}", empty="No series match.")
        else:
            rows = [summarise(series) for series in body["metrics"]]
            title = f"Last {options['hours']:g} h{more}"
            self.emit(rows, RANGE_COLUMNS, options["format"], title=title, empty="No series match.")
