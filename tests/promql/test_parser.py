"""The lexer and the recursive-descent parser: every construct of the subset, precedence and
associativity, and every error (invalid PromQL and PromQL outside the subset)."""

import math

import pytest

from monitoring.promql.ast import (
    Aggregation,
    Binary,
    Call,
    Cardinality,
    Matcher,
    MatchOp,
    MatrixSelector,
    NumberLiteral,
    Paren,
    StringLiteral,
    Unary,
    ValueType,
    VectorSelector,
    selectors,
)
from monitoring.promql.errors import UnsupportedError
from monitoring.promql.lexer import Kind, tokenize
from monitoring.promql.parser import ParseError, parse_expr, parse_selector, validate_expr


def name_matcher(name: str) -> Matcher:
    return Matcher("__name__", MatchOp.EQUAL, name)


def sel(name: str, *matchers: Matcher, offset_ms: int = 0) -> VectorSelector:
    return VectorSelector(name, (name_matcher(name), *matchers), offset_ms)


# --- lexer ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1.0), ("1.5", 1.5), (".5", 0.5), ("1e3", 1000.0), ("2.5E-2", 0.025), ("0x1F", 31.0), ("Inf", math.inf),
     ("inf", math.inf), ("NaN", math.nan)],
)  # fmt: skip
def test_numbers(text, value):
    (token, end) = tokenize(text)
    assert token.kind is Kind.NUMBER and end.kind is Kind.EOF
    assert (math.isnan(token.value) and math.isnan(value)) or token.value == value


@pytest.mark.parametrize(
    ("text", "ms"),
    [("5m", 300_000), ("30s", 30_000), ("100ms", 100), ("1h30m", 5_400_000), ("2d", 172_800_000), ("1w", 604_800_000),
     ("1y", 31_536_000_000), ("1m30s500ms", 90_500)],
)  # fmt: skip
def test_durations(text, ms):
    assert tokenize(text)[0].kind is Kind.DURATION and tokenize(text)[0].value == ms


@pytest.mark.parametrize(
    ("text", "value"),
    [('"a\\nb"', "a\nb"), ("'it''s'", None), ("'a\"b'", 'a"b'), ('"\\x41\\u00e9\\101"', "Aé" + "A"),
     ("`raw\\n`", "raw\\n"), ('"tab\\t"', "tab\t"), ('"q\\""', 'q"')],
)  # fmt: skip
def test_strings(text, value):
    if value is None:  # two adjacent strings are two tokens
        assert [t.kind for t in tokenize(text)] == [Kind.STRING, Kind.STRING, Kind.EOF]
        return
    assert tokenize(text)[0].value == value


def test_identifiers_operators_and_comments():
    tokens = tokenize("job:rate5m{a=~'x'} != bool # a comment\n 1")
    assert [(t.kind, t.text) for t in tokens] == [
        (Kind.IDENT, "job:rate5m"), (Kind.PUNCT, "{"), (Kind.IDENT, "a"), (Kind.OP, "=~"), (Kind.STRING, "'x'"),
        (Kind.PUNCT, "}"), (Kind.OP, "!="), (Kind.IDENT, "bool"), (Kind.NUMBER, "1"), (Kind.EOF, ""),
    ]  # fmt: skip


# --- constructs -----------------------------------------------------------------------------


def test_literals():
    assert parse_expr("42") == NumberLiteral(42.0)
    assert parse_expr("-1.5") == NumberLiteral(-1.5)
    assert parse_expr('"text"') == StringLiteral("text")
    assert parse_expr("'single'").type is ValueType.STRING


def test_vector_selectors_with_every_matcher():
    node = parse_expr('http_requests_total{job="api", code!="200", path=~"/v1/.*", method!~"GET|HEAD",}')
    assert node == sel(
        "http_requests_total",
        Matcher("job", MatchOp.EQUAL, "api"),
        Matcher("code", MatchOp.NOT_EQUAL, "200"),
        Matcher("path", MatchOp.REGEX, "/v1/.*"),
        Matcher("method", MatchOp.NOT_REGEX, "GET|HEAD"),
    )
    assert node.type is ValueType.VECTOR
    bare = parse_expr('{__name__="up", job="x"}')
    assert bare.name == "up" and bare.matchers[1] == Matcher("job", MatchOp.EQUAL, "x")
    assert parse_expr('{__name__=~"up|down"}').name is None


def test_regex_matchers_are_anchored():
    matcher = parse_expr('x{a=~"b|c"}').matchers[1]
    assert matcher.matches("b") and matcher.matches("c") and not matcher.matches("bc") and not matcher.matches("ab")


def test_range_selectors_and_offsets():
    assert parse_expr("x[5m]") == MatrixSelector(sel("x"), 300_000)
    assert parse_expr("x[5m] offset 1h") == MatrixSelector(sel("x", offset_ms=3_600_000), 300_000)
    assert parse_expr("x offset 30s") == sel("x", offset_ms=30_000)
    assert parse_expr("x offset -1m") == sel("x", offset_ms=-60_000)
    assert parse_expr("x[1h30m]").type is ValueType.MATRIX


def test_functions():
    node = parse_expr('rate(http_requests_total{job="api"}[5m])')
    assert isinstance(node, Call) and node.func == "rate" and isinstance(node.args[0], MatrixSelector)
    for func in ("rate", "irate", "increase", "delta", "avg_over_time", "min_over_time", "max_over_time",
                 "sum_over_time", "count_over_time", "last_over_time"):  # fmt: skip
        assert parse_expr(f"{func}(x[1m])").type is ValueType.VECTOR
    for func in ("abs", "ceil", "floor", "round"):
        assert parse_expr(f"{func}(x)") == Call(func, (sel("x"),), ValueType.VECTOR)
    assert parse_expr("round(x, 0.5)").args[1] == NumberLiteral(0.5)
    assert parse_expr("clamp_min(x, 0)").args == (sel("x"), NumberLiteral(0.0))
    assert parse_expr("clamp_max(x, 1)").func == "clamp_max"
    assert parse_expr("time()") == Call("time", (), ValueType.SCALAR)
    assert parse_expr("vector(1)").type is ValueType.VECTOR
    assert parse_expr("scalar(x)").type is ValueType.SCALAR
    node = parse_expr("histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))")
    assert node.func == "histogram_quantile" and node.args[0] == NumberLiteral(0.9)


def test_aggregations_with_by_and_without():
    assert parse_expr("sum(x)") == Aggregation("sum", sel("x"))
    assert parse_expr("sum by (job, instance) (x)") == Aggregation("sum", sel("x"), grouping=("job", "instance"))
    assert parse_expr("sum(x) by (job)") == Aggregation("sum", sel("x"), grouping=("job",))
    assert parse_expr("avg without (instance) (x)") == Aggregation(
        "avg", sel("x"), grouping=("instance",), without=True
    )
    assert parse_expr("count by () (x)") == Aggregation("count", sel("x"))
    for op in ("min", "max", "stddev", "SUM", "Avg"):
        assert parse_expr(f"{op}(x)").op == op.lower()
    assert parse_expr("topk(3, x)") == Aggregation("topk", sel("x"), NumberLiteral(3.0))
    assert parse_expr("bottomk by (job) (1, x)").grouping == ("job",)
    assert parse_expr("quantile(0.95, x)").param == NumberLiteral(0.95)


def test_binary_precedence_and_associativity():
    one, two, three = NumberLiteral(1.0), NumberLiteral(2.0), NumberLiteral(3.0)
    scalar = ValueType.SCALAR
    assert parse_expr("1 + 2 * 3") == Binary("+", one, Binary("*", two, three, type=scalar), type=scalar)
    assert parse_expr("1 - 2 - 3") == Binary("-", Binary("-", one, two, type=scalar), three, type=scalar)
    assert parse_expr("1 ^ 2 ^ 3") == Binary("^", one, Binary("^", two, three, type=scalar), type=scalar)
    assert parse_expr("-x ^ 2") == Unary("-", Binary("^", sel("x"), two))
    assert parse_expr("-x * 2") == Binary("*", Unary("-", sel("x")), two)
    assert parse_expr("(1 + 2) * 3") == Binary("*", Paren(Binary("+", one, two, type=scalar)), three, type=scalar)
    # or < and/unless < comparisons < + - < * / % < ^
    node = parse_expr("a or b and c > 1 + 2 * 3 ^ 4")
    assert node.op == "or" and node.rhs.op == "and" and node.rhs.rhs.op == ">"
    assert node.rhs.rhs.rhs.op == "+" and node.rhs.rhs.rhs.rhs.op == "*" and node.rhs.rhs.rhs.rhs.rhs.op == "^"
    assert parse_expr("a unless b or c").op == "or"


def test_binary_operators_and_modifiers():
    for op in ("+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<="):
        node = parse_expr(f"a {op} b")
        assert node.op == op and node.matching.card is Cardinality.ONE_TO_ONE
    assert parse_expr("a > bool 1").return_bool
    assert parse_expr("1 > bool 2").type is ValueType.SCALAR
    node = parse_expr("a / on(job, instance) b")
    assert node.matching.on and node.matching.labels == ("job", "instance")
    node = parse_expr("a / ignoring(code) b")
    assert not node.matching.on and node.matching.labels == ("code",)
    node = parse_expr("a * on(host) group_left(team, owner) b")
    assert node.matching.card is Cardinality.MANY_TO_ONE and node.matching.include == ("team", "owner")
    node = parse_expr("a * ignoring(x) group_right b")
    assert node.matching.card is Cardinality.ONE_TO_MANY and node.matching.include == ()
    node = parse_expr("a == bool on(x) b")
    assert node.return_bool and node.matching.on
    for op in ("and", "or", "unless", "AND"):
        node = parse_expr(f"a {op} on(job) b")
        assert node.op == op.lower() and node.matching.card is Cardinality.MANY_TO_MANY


def test_selectors_lists_every_selector():
    node = parse_expr("sum(rate(a[5m])) / on() group_left b + scalar(c)")
    assert [s.name for s in selectors(node)] == ["a", "b", "c"]


def test_parse_selector_and_validate_expr():
    assert parse_selector('up{job="x"}') == sel("up", Matcher("job", MatchOp.EQUAL, "x"))
    with pytest.raises(ParseError, match="not a series selector"):
        parse_selector("sum(up)")
    assert validate_expr('count(device_connectivity{site="north"} < 1) / count(device_connectivity) > 0.1') is None
    assert validate_expr("1 + 1") is None
    assert (
        validate_expr("up[5m]") == "an alert expression must return an instant vector or a scalar, not a range vector"
    )
    assert "unexpected end of input" in validate_expr("sum(up")
    assert "subquery" in validate_expr("max_over_time(up[5m:1m])")


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "1:1: parse error: no expression found in input"),
        ("   # only a comment", "no expression found in input"),
        ("sum(x", '1:6: parse error: unexpected end of input in aggregation, expected "," or ")"'),
        ("(1 + 2", 'unexpected end of input in paren expression, expected ")"'),
        ("()", 'unexpected ")" in paren expression'),
        ("1 +", "unexpected end of input"),
        ("x y", 'unexpected identifier "y"'),
        ("x{a=1}", 'unexpected number "1" in label matching, expected string'),
        ("x{a}", 'unexpected "}" in label matching, expected label matching operator'),
        ('x{a="b" c="d"}', 'unexpected identifier "c" in label matching, expected "," or "}"'),
        ('x{a:b="c"}', "expected label matching operator"),
        ('x{a=~"("}', "invalid regular expression '('"),
        ('x{__name__="y"}', 'metric name must not be set twice: "x" or "y"'),
        ('{a=""}', "vector selector must contain at least one non-empty matcher"),
        ('{a=~".*"}', "vector selector must contain at least one non-empty matcher"),
        ("x[5]", 'unexpected number "5" in range, expected duration'),
        ("x[5m", 'unexpected end of input in range, expected "]"'),
        ("x[0s]", "range must be positive"),
        ("(x)[5m]", "ranges only allowed for vector selectors"),
        ("x offset 1m [5m]", "no offset modifiers allowed before range"),
        ("x offset 1m offset 2m", "offset may not be set multiple times"),
        ("sum(x) offset 1m", "offset modifier must be preceded by an instant vector selector or range vector selector"),
        ("x offset 5", 'unexpected number "5" in offset, expected duration'),
        ("5m", 'unexpected duration "5m"'),
        ("1.2.3", 'bad number or duration syntax: "1.2.3"'),
        ("5x", 'bad number or duration syntax: "5x"'),
        ("1h30", 'bad number or duration syntax: "1h30"'),
        ('"abc', "unterminated quoted string"),
        ("`abc", "unterminated raw string"),
        ('"\\q"', "unknown escape sequence in string"),
        ('"\\x4"', "invalid escape sequence in string"),
        ("x ! y", "unexpected character after '!'"),
        ("x $ y", "unexpected character: '$'"),
        ("nosuch(x)", 'unknown function with name "nosuch"'),
        ("Rate(x[5m])", 'unknown function with name "Rate"'),
        ("rate(x)", 'expected type range vector in call to function "rate", got instant vector'),
        ("abs(x[5m])", 'expected type instant vector in call to function "abs", got range vector'),
        ("rate(x[5m], 1)", 'expected 1 argument(s) in call to "rate", got 2'),
        ("time(1)", 'expected 0 argument(s) in call to "time", got 1'),
        ("clamp_min(x)", 'expected 2 argument(s) in call to "clamp_min", got 1'),
        ("round()", 'expected at least 1 argument(s) in call to "round", got 0'),
        ("round(x, 1, 2)", 'expected at most 2 argument(s) in call to "round", got 3'),
        (
            "histogram_quantile(x, y)",
            'expected type scalar in call to function "histogram_quantile", got instant vector',
        ),
        ("sum(x[5m])", "expected type instant vector in aggregation expression, got range vector"),
        ("topk(x)", "wrong number of arguments for aggregate expression provided, expected 2, got 1"),
        ("sum(1, x)", "wrong number of arguments for aggregate expression provided, expected 1, got 2"),
        ("topk(x, y)", "expected type scalar in aggregation parameter, got instant vector"),
        ("sum by (a) (x) by (b)", 'unexpected identifier "by"'),
        ("sum by (a-b) (x)", 'unexpected "-" in grouping opts, expected "," or ")"'),
        ("sum by (1) (x)", 'unexpected number "1" in grouping opts, expected label'),
        ("sum x", 'unexpected identifier "x" in aggregation, expected "("'),
        ("1 > 2", "comparisons between scalars must use BOOL modifier"),
        ("x + bool 1", "bool modifier can only be used on comparisons"),
        ("x and 1", 'set operator "and" not allowed in binary scalar expression'),
        ("1 or x", 'set operator "or" not allowed in binary scalar expression'),
        ('"a" + 1', "binary expression must contain only scalar and instant vector types"),
        ("x[5m] * 2", "binary expression must contain only scalar and instant vector types"),
        ("x + on(a) 1", "vector matching only allowed between instant vectors"),
        ("x and on(a) group_left y", 'no grouping allowed for "and" operation'),
        ("x + on(a) group_left(a) y", 'label "a" must not occur in ON and GROUP clause at once'),
        ('-"a"', 'unary expression only allowed on expressions of type scalar or instant vector, got "string"'),
        ("on(x)", 'unexpected identifier "on"'),
        ("x +\n  )", '2:3: parse error: unexpected ")"'),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(ParseError) as raised:
        parse_expr(text)
    assert message in str(raised.value)
    assert not isinstance(raised.value, UnsupportedError)


@pytest.mark.parametrize(
    ("text", "construct"),
    [
        ("x[5m:1m]", 'subquery "[5m:1m]"'),
        ("max_over_time(rate(x[1m])[5m:])", 'subquery "[5m:]"'),
        ("x @ 1609746000", "the @ modifier"),
        ('label_replace(x, "a", "$1", "b", "(.*)")', 'function "label_replace"'),
        ("absent(x)", 'function "absent"'),
        ("sort(x)", 'function "sort"'),
        ("predict_linear(x[1h], 3600)", 'function "predict_linear"'),
        ("stdvar(x)", 'aggregation "stdvar"'),
        ('count_values("v", x)', 'aggregation "count_values"'),
        ("group(x)", 'aggregation "group"'),
        ("x atan2 y", 'binary operator "atan2"'),
    ],
)
def test_constructs_outside_the_subset_are_refused_by_name(text, construct):
    with pytest.raises(UnsupportedError) as raised:
        parse_expr(text)
    assert f"unsupported: {construct} is not supported" in str(raised.value)
    assert raised.value.error_type == "bad_data" and raised.value.status == 400
