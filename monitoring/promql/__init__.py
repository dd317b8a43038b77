"""A Prometheus-compatible query layer: a PromQL subset (lexer, recursive-descent parser,
evaluator over the stored samples) and the Prometheus HTTP API v1 read endpoints."""

from .errors import ExecutionError, PromQLError, QueryTimeout, UnsupportedError
from .parser import ParseError, parse_expr, validate_expr

__all__ = [
    "ExecutionError",
    "ParseError",
    "PromQLError",
    "QueryTimeout",
    "UnsupportedError",
    "parse_expr",
    "validate_expr",
]
