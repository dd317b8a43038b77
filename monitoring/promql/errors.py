"""The errors of the query layer, each with the Prometheus API error type and HTTP status
it is answered with."""


class PromQLError(Exception):
    """Base of every query error; `error_type` and `status` are the API's answer."""

    error_type = "bad_data"
    status = 400


class BadDataError(PromQLError):
    """A malformed query or parameter (Prometheus' `bad_data`, 400)."""


class UnsupportedError(BadDataError):
    """Valid PromQL outside the subset this system evaluates: refused, never answered wrongly."""


class ExecutionError(PromQLError):
    """The query is valid but cannot be evaluated on this data (Prometheus' `execution`, 422):
    many-to-many matching, duplicate label sets, too many samples."""

    error_type = "execution"
    status = 422


class QueryTimeout(PromQLError):
    """The evaluation ran past its deadline (Prometheus' `timeout`, 503)."""

    error_type = "timeout"
    status = 503
