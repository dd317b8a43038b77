"""A recursive-descent parser for the PromQL subset this system evaluates, with Prometheus'
operator precedence and type checks. Valid PromQL outside the subset (subqueries, `@`,
functions and aggregations not implemented) is refused with UnsupportedError, naming it."""

import re

from .ast import (
    Aggregation,
    Binary,
    Call,
    Cardinality,
    Matcher,
    MatchOp,
    MatrixSelector,
    Node,
    NumberLiteral,
    Paren,
    StringLiteral,
    Unary,
    ValueType,
    VectorMatching,
    VectorSelector,
    unwrap,
)
from .errors import BadDataError, UnsupportedError
from .lexer import Kind, LexError, Token, tokenize

SCALAR, VECTOR, MATRIX, STRING = ValueType.SCALAR, ValueType.VECTOR, ValueType.MATRIX, ValueType.STRING

# name -> (argument types, number of trailing optional arguments, return type)
FUNCTIONS: dict[str, tuple[tuple[ValueType, ...], int, ValueType]] = {
    "rate": ((MATRIX,), 0, VECTOR),
    "irate": ((MATRIX,), 0, VECTOR),
    "increase": ((MATRIX,), 0, VECTOR),
    "delta": ((MATRIX,), 0, VECTOR),
    "avg_over_time": ((MATRIX,), 0, VECTOR),
    "min_over_time": ((MATRIX,), 0, VECTOR),
    "max_over_time": ((MATRIX,), 0, VECTOR),
    "sum_over_time": ((MATRIX,), 0, VECTOR),
    "count_over_time": ((MATRIX,), 0, VECTOR),
    "last_over_time": ((MATRIX,), 0, VECTOR),
    "abs": ((VECTOR,), 0, VECTOR),
    "ceil": ((VECTOR,), 0, VECTOR),
    "floor": ((VECTOR,), 0, VECTOR),
    "round": ((VECTOR, SCALAR), 1, VECTOR),
    "clamp_min": ((VECTOR, SCALAR), 0, VECTOR),
    "clamp_max": ((VECTOR, SCALAR), 0, VECTOR),
    "time": ((), 0, SCALAR),
    "vector": ((SCALAR,), 0, VECTOR),
    "scalar": ((VECTOR,), 0, SCALAR),
    "histogram_quantile": ((SCALAR, VECTOR), 0, VECTOR),
}
# Prometheus functions outside the subset: refused by name rather than called unknown.
UNSUPPORTED_FUNCTIONS = frozenset(
    """absent absent_over_time acos acosh asin asinh atan atanh changes clamp cos cosh day_of_month
    day_of_week day_of_year days_in_month deg deriv exp first_over_time group_over_time holt_winters
    double_exponential_smoothing hour histogram_avg histogram_count histogram_fraction histogram_stddev
    histogram_stdvar histogram_sum idelta info label_join label_replace limitk limit_ratio ln log10 log2
    mad_over_time minute month pi predict_linear present_over_time quantile_over_time rad resets sgn sin
    sinh sort sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time tan tanh
    timestamp ts_of_first_over_time ts_of_last_over_time ts_of_max_over_time ts_of_min_over_time year""".split()  # noqa: SIM905
)
AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count", "stddev", "topk", "bottomk", "quantile"})
PARAMETRIC_AGGREGATIONS = frozenset({"topk", "bottomk", "quantile"})
UNSUPPORTED_AGGREGATIONS = frozenset({"stdvar", "count_values", "group", "limitk", "limit_ratio"})

ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "^"})
COMPARISON = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPERATORS = frozenset({"and", "or", "unless"})
# Binding strength, loosest first, as in Prometheus' grammar; `^` is right-associative.
PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, ">": 3, "<": 3, ">=": 3, "<=": 3,
              "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}  # fmt: skip
# Words that are keywords wherever they appear, so they never name a metric.
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                      "unless", "atan2"}) | AGGREGATIONS | UNSUPPORTED_AGGREGATIONS  # fmt: skip
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class ParseError(BadDataError):
    """A query that is not valid PromQL; the message says where, as Prometheus does."""


def _position(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"{line}:{column}"


def parse_expr(text: str) -> Node:
    """The syntax tree of `text`. Raises ParseError for invalid PromQL and UnsupportedError for
    valid PromQL outside the subset."""
    try:
        tokens = tokenize(text)
    except LexError as exc:
        raise ParseError(f"{_position(text, exc.pos)}: parse error: {exc.message}") from None
    return _Parser(text, tokens).parse()


def parse_selector(text: str) -> VectorSelector:
    """A series selector (`up{job="x"}`, `{__name__=~"a.*"}`) as the `match[]` of the
    metadata endpoints takes it: nothing but a vector selector."""
    node = unwrap(parse_expr(text))
    if not isinstance(node, VectorSelector) or node.offset_ms:
        raise ParseError(f'1:1: parse error: {text!r} is not a series selector such as up{{job="api"}}')
    return node


def validate_expr(text: str) -> str | None:
    """Why `text` cannot be an alert rule's expression, or None when it can: it must parse,
    stay within the supported subset and return an instant vector or a scalar (each series
    of its result is one alert)."""
    try:
        node = parse_expr(text)
    except BadDataError as exc:
        return str(exc)
    if node.type not in (VECTOR, SCALAR):
        return f"an alert expression must return an instant vector or a scalar, not a {node.type.value}"
    return None


class _Parser:
    def __init__(self, text: str, tokens: list[Token]):
        self.text = text
        self.tokens = tokens
        self.index = 0

    # --- helpers ---------------------------------------------------------------------------

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not Kind.EOF:
            self.index += 1
        return token

    def error(self, message: str, token: Token | None = None) -> ParseError:
        pos = (token or self.token).pos
        return ParseError(f"{_position(self.text, pos)}: parse error: {message}")

    def unsupported(self, message: str, token: Token) -> UnsupportedError:
        return UnsupportedError(f"{_position(self.text, token.pos)}: unsupported: {message}")

    def unexpected(self, context: str = "", expected: str = "") -> ParseError:
        message = f"unexpected {self.token.describe()}"
        if context:
            message += f" in {context}"
        if expected:
            message += f", expected {expected}"
        return self.error(message)

    def is_punct(self, char: str, token: Token | None = None) -> bool:
        token = token or self.token
        return token.kind is Kind.PUNCT and token.text == char

    def is_word(self, *words: str, token: Token | None = None) -> bool:
        token = token or self.token
        return token.kind is Kind.IDENT and token.text.lower() in words

    def expect_punct(self, char: str, context: str) -> Token:
        if not self.is_punct(char):
            raise self.unexpected(context, f'"{char}"')
        return self.advance()

    # --- grammar ---------------------------------------------------------------------------

    def parse(self) -> Node:
        if self.token.kind is Kind.EOF:
            raise self.error("no expression found in input")
        node = self.binary(0)
        if self.token.kind is not Kind.EOF:
            raise self.unexpected()
        return node

    def binary_operator(self) -> str | None:
        token = self.token
        if token.kind is Kind.OP and token.text in PRECEDENCE:
            return token.text
        if token.kind is Kind.IDENT and token.text.lower() in ("and", "or", "unless", "atan2"):
            return token.text.lower()
        return None

    def binary(self, min_precedence: int) -> Node:
        lhs = self.unary()
        while True:
            op = self.binary_operator()
            if op is None or PRECEDENCE[op] < min_precedence:
                return lhs
            op_token = self.advance()
            if op == "atan2":
                raise self.unsupported('binary operator "atan2" is not supported', op_token)
            return_bool, matching = self.binary_modifiers(op)
            # Left-associative operators bind the next operand tighter; `^` binds to the right.
            rhs = self.binary(PRECEDENCE[op] if op == "^" else PRECEDENCE[op] + 1)
            lhs = self.make_binary(op, op_token, lhs, rhs, return_bool, matching)

    def binary_modifiers(self, op: str) -> tuple[bool, VectorMatching | None]:
        return_bool = False
        if self.is_word("bool"):
            if op not in COMPARISON:
                raise self.error("bool modifier can only be used on comparisons")
            self.advance()
            return_bool = True
        if not self.is_word("on", "ignoring"):
            return return_bool, None
        on = self.advance().text.lower() == "on"
        labels = self.label_list("grouping opts")
        card = Cardinality.MANY_TO_MANY if op in SET_OPERATORS else Cardinality.ONE_TO_ONE
        include: tuple[str, ...] = ()
        if self.is_word("group_left", "group_right"):
            group_token = self.advance()
            if op in SET_OPERATORS:
                raise self.error(f'no grouping allowed for "{op}" operation', group_token)
            card = Cardinality.MANY_TO_ONE if group_token.text.lower() == "group_left" else Cardinality.ONE_TO_MANY
            if self.is_punct("("):
                include = self.label_list("grouping opts")
            if on:
                for label in include:
                    if label in labels:
                        raise self.error(f'label "{label}" must not occur in ON and GROUP clause at once', group_token)
        return return_bool, VectorMatching(card=card, on=on, labels=labels, include=include)

    def make_binary(
        self, op: str, token: Token, lhs: Node, rhs: Node, return_bool: bool, matching: VectorMatching | None
    ) -> Binary:
        if op in SET_OPERATORS and (lhs.type is SCALAR or rhs.type is SCALAR):
            raise self.error(f'set operator "{op}" not allowed in binary scalar expression', token)
        if lhs.type not in (SCALAR, VECTOR) or rhs.type not in (SCALAR, VECTOR):
            raise self.error("binary expression must contain only scalar and instant vector types", token)
        both_scalar = lhs.type is SCALAR and rhs.type is SCALAR
        if op in COMPARISON and both_scalar and not return_bool:
            raise self.error("comparisons between scalars must use BOOL modifier", token)
        if matching is not None and (lhs.type is not VECTOR or rhs.type is not VECTOR):
            raise self.error("vector matching only allowed between instant vectors", token)
        if matching is None and lhs.type is VECTOR and rhs.type is VECTOR:
            card = Cardinality.MANY_TO_MANY if op in SET_OPERATORS else Cardinality.ONE_TO_ONE
            matching = VectorMatching(card=card)
        return Binary(op, lhs, rhs, return_bool, matching, SCALAR if both_scalar else VECTOR)

    def unary(self) -> Node:
        token = self.token
        if token.kind is Kind.OP and token.text in ("+", "-"):
            self.advance()
            # A unary operator binds like multiplication: -a^b is -(a^b), -a*b is (-a)*b.
            operand = self.binary(PRECEDENCE["^"])
            if operand.type not in (SCALAR, VECTOR):
                raise self.error(
                    "unary expression only allowed on expressions of type scalar or instant vector, "
                    f'got "{operand.type.value}"',
                    token,
                )
            if token.text == "+":
                return operand
            if isinstance(operand, NumberLiteral):
                return NumberLiteral(-operand.value)
            return Unary("-", operand)
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.token
            if self.is_punct("["):
                node = self.range_suffix(node)
            elif self.is_word("offset"):
                node = self.offset_suffix(node)
            elif self.is_punct("@"):
                raise self.unsupported("the @ modifier is not supported", token)
            else:
                return node

    def range_suffix(self, node: Node) -> Node:
        bracket = self.advance()
        if self.token.kind is not Kind.DURATION:
            raise self.unexpected("range", "duration")
        duration = self.advance()
        if self.is_punct(":"):
            close = self.text.find("]", bracket.pos)
            written = self.text[bracket.pos : close + 1 if close > 0 else len(self.text)]
            raise self.unsupported(f'subquery "{written}" is not supported', bracket)
        self.expect_punct("]", "range")
        if not isinstance(node, VectorSelector):
            raise self.error("ranges only allowed for vector selectors", bracket)
        if node.offset_ms:
            raise self.error("no offset modifiers allowed before range", bracket)
        if duration.value <= 0:
            raise self.error(f"range must be positive, got {duration.text}", duration)
        return MatrixSelector(node, duration.value)

    def offset_suffix(self, node: Node) -> Node:
        keyword = self.advance()
        sign = 1
        if self.token.kind is Kind.OP and self.token.text == "-":
            self.advance()
            sign = -1
        if self.token.kind is not Kind.DURATION:
            raise self.unexpected("offset", "duration")
        offset = sign * self.advance().value
        if isinstance(node, VectorSelector):
            if node.offset_ms:
                raise self.error("offset may not be set multiple times", keyword)
            return VectorSelector(node.name, node.matchers, offset)
        if isinstance(node, MatrixSelector):
            if node.selector.offset_ms:
                raise self.error("offset may not be set multiple times", keyword)
            selector = node.selector
            return MatrixSelector(VectorSelector(selector.name, selector.matchers, offset), node.range_ms)
        raise self.error(
            "offset modifier must be preceded by an instant vector selector or range vector selector", keyword
        )

    def primary(self) -> Node:
        token = self.token
        if token.kind is Kind.NUMBER:
            self.advance()
            return NumberLiteral(token.value)
        if token.kind is Kind.STRING:
            self.advance()
            return StringLiteral(token.value)
        if self.is_punct("("):
            self.advance()
            if self.is_punct(")"):
                raise self.unexpected("paren expression")
            inner = self.binary(0)
            self.expect_punct(")", "paren expression")
            return Paren(inner)
        if self.is_punct("{"):
            return self.selector(None, token)
        if token.kind is Kind.IDENT:
            word = token.text.lower()
            if word in AGGREGATIONS or word in UNSUPPORTED_AGGREGATIONS:
                return self.aggregation()
            if self.is_punct("(", self.peek()) and word not in KEYWORDS:
                return self.call()
            if word in KEYWORDS:
                raise self.unexpected()
            self.advance()
            return self.selector(token.text, token)
        if token.kind is Kind.DURATION:
            raise self.unexpected()
        raise self.unexpected() if token.kind is not Kind.EOF else self.error("unexpected end of input")

    def selector(self, name: str | None, start: Token) -> VectorSelector:
        matchers: list[Matcher] = []
        if self.is_punct("{"):
            self.advance()
            while not self.is_punct("}"):
                matchers.append(self.matcher())
                if self.is_punct(","):
                    self.advance()
                elif not self.is_punct("}"):
                    raise self.unexpected("label matching", '"," or "}"')
            self.advance()
        if name is not None:
            for matcher in matchers:
                if matcher.name == "__name__":
                    raise self.error(f'metric name must not be set twice: "{name}" or "{matcher.value}"', start)
            matchers.insert(0, Matcher("__name__", MatchOp.EQUAL, name))
        if not any(not matcher.matches("") for matcher in matchers):
            raise self.error("vector selector must contain at least one non-empty matcher", start)
        name_matchers = [m for m in matchers if m.name == "__name__" and m.op is MatchOp.EQUAL]
        return VectorSelector(name if name is not None else (name_matchers[0].value if name_matchers else None),
                              tuple(matchers))  # fmt: skip

    def matcher(self) -> Matcher:
        token = self.token
        if token.kind is not Kind.IDENT or not LABEL_NAME.fullmatch(token.text):
            raise self.unexpected("label matching", "label matching operator")
        self.advance()
        op_token = self.token
        if op_token.kind is not Kind.OP or op_token.text not in ("=", "!=", "=~", "!~"):
            raise self.unexpected("label matching", "label matching operator")
        self.advance()
        if self.token.kind is not Kind.STRING:
            raise self.unexpected("label matching", "string")
        value = self.advance().value
        op = MatchOp(op_token.text)
        regex = None
        if op in (MatchOp.REGEX, MatchOp.NOT_REGEX):
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise self.error(f"invalid regular expression {value!r}: {exc}", op_token) from None
        return Matcher(token.text, op, value, regex)

    def label_list(self, context: str) -> tuple[str, ...]:
        self.expect_punct("(", context)
        labels: list[str] = []
        while not self.is_punct(")"):
            token = self.token
            if token.kind is not Kind.IDENT or not LABEL_NAME.fullmatch(token.text):
                raise self.unexpected(context, "label")
            labels.append(self.advance().text)
            if self.is_punct(","):
                self.advance()
            elif not self.is_punct(")"):
                raise self.unexpected(context, '"," or ")"')
        self.advance()
        return tuple(labels)

    def arguments(self, context: str) -> list[Node]:
        self.expect_punct("(", context)
        args: list[Node] = []
        while not self.is_punct(")"):
            args.append(self.binary(0))
            if self.is_punct(","):
                self.advance()
            elif not self.is_punct(")"):
                raise self.unexpected(context, '"," or ")"')
        self.advance()
        return args

    def call(self) -> Call:
        token = self.advance()
        name = token.text
        if name in UNSUPPORTED_FUNCTIONS:
            raise self.unsupported(f'function "{name}" is not supported', token)
        if name not in FUNCTIONS:
            raise self.error(f'unknown function with name "{name}"', token)
        args = self.arguments("function call")
        types, optional, returns = FUNCTIONS[name]
        got = len(args)
        if got > len(types):
            bound = "at most " if optional else ""
            raise self.error(f'expected {bound}{len(types)} argument(s) in call to "{name}", got {got}', token)
        if got < len(types) - optional:
            bound, needed = ("at least ", len(types) - optional) if optional else ("", len(types))
            raise self.error(f'expected {bound}{needed} argument(s) in call to "{name}", got {got}', token)
        for arg, expected in zip(args, types, strict=False):
            if arg.type is not expected:
                raise self.error(
                    f'expected type {expected.value} in call to function "{name}", got {arg.type.value}', token
                )
        return Call(name, tuple(args), returns)

    def aggregation(self) -> Aggregation:
        token = self.advance()
        op = token.text.lower()
        if op in UNSUPPORTED_AGGREGATIONS:
            raise self.unsupported(f'aggregation "{op}" is not supported', token)
        grouping: tuple[str, ...] = ()
        without = False
        grouped = False
        if self.is_word("by", "without"):
            without = self.advance().text.lower() == "without"
            grouping = self.label_list("grouping opts")
            grouped = True
        args = self.arguments("aggregation")
        if self.is_word("by", "without"):
            if grouped:
                raise self.unexpected("aggregation")
            without = self.advance().text.lower() == "without"
            grouping = self.label_list("grouping opts")
        expected = 2 if op in PARAMETRIC_AGGREGATIONS else 1
        if len(args) != expected:
            raise self.error(
                f"wrong number of arguments for aggregate expression provided, expected {expected}, got {len(args)}",
                token,
            )
        param = args[0] if expected == 2 else None
        expr = args[-1]
        if expr.type is not VECTOR:
            raise self.error(f"expected type instant vector in aggregation expression, got {expr.type.value}", token)
        if param is not None and param.type is not SCALAR:
            raise self.error(f"expected type scalar in aggregation parameter, got {param.type.value}", token)
        return Aggregation(op, expr, param, grouping, without)
