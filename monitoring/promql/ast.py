"""The syntax tree of a parsed PromQL expression: frozen nodes, each knowing the type of
value it evaluates to (Prometheus' scalar, instant vector, range vector, string)."""

import re
from dataclasses import dataclass, field
from enum import StrEnum


class ValueType(StrEnum):
    SCALAR = "scalar"
    VECTOR = "instant vector"
    MATRIX = "range vector"
    STRING = "string"


class MatchOp(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    """A label matcher. Regexes are anchored at both ends, as Prometheus anchors them."""

    name: str
    op: MatchOp
    value: str
    regex: re.Pattern | None = field(default=None, compare=False, repr=False)

    def matches(self, value: str) -> bool:
        """Whether a label's value (the empty string for a missing label) satisfies this."""
        if self.op is MatchOp.EQUAL:
            return value == self.value
        if self.op is MatchOp.NOT_EQUAL:
            return value != self.value
        matched = self.regex.fullmatch(value) is not None
        return matched if self.op is MatchOp.REGEX else not matched


class Node:
    """Base of every node; `type` is the value type it evaluates to."""

    __slots__ = ()
    type: ValueType


@dataclass(frozen=True, slots=True)
class NumberLiteral(Node):
    value: float
    type = ValueType.SCALAR


@dataclass(frozen=True, slots=True)
class StringLiteral(Node):
    value: str
    type = ValueType.STRING


@dataclass(frozen=True, slots=True)
class VectorSelector(Node):
    """`name{matchers} offset d`. `matchers` include the name as a `__name__` matcher."""

    name: str | None
    matchers: tuple[Matcher, ...]
    offset_ms: int = 0
    type = ValueType.VECTOR


@dataclass(frozen=True, slots=True)
class MatrixSelector(Node):
    """`selector[range]`: the samples of each series within the range before each step."""

    selector: VectorSelector
    range_ms: int
    type = ValueType.MATRIX


@dataclass(frozen=True, slots=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]
    type: ValueType


@dataclass(frozen=True, slots=True)
class Aggregation(Node):
    """`op [by|without (labels)] ([param,] expr)`."""

    op: str
    expr: Node
    param: Node | None = None
    grouping: tuple[str, ...] = ()
    without: bool = False
    type = ValueType.VECTOR


class Cardinality(StrEnum):
    ONE_TO_ONE = "one-to-one"
    MANY_TO_ONE = "many-to-one"  # group_left
    ONE_TO_MANY = "one-to-many"  # group_right
    MANY_TO_MANY = "many-to-many"  # and, or, unless


@dataclass(frozen=True, slots=True)
class VectorMatching:
    """How the two sides of a binary operation between vectors find their partners."""

    card: Cardinality = Cardinality.ONE_TO_ONE
    on: bool = False  # True: match on `labels`; False: ignoring `labels` (and __name__)
    labels: tuple[str, ...] = ()
    include: tuple[str, ...] = ()  # group_left/group_right labels taken from the "one" side


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    lhs: Node
    rhs: Node
    return_bool: bool = False
    matching: VectorMatching | None = None  # only between two instant vectors
    type: ValueType = ValueType.VECTOR


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # "-" or "+"
    expr: Node

    @property
    def type(self) -> ValueType:
        return self.expr.type


@dataclass(frozen=True, slots=True)
class Paren(Node):
    expr: Node

    @property
    def type(self) -> ValueType:
        return self.expr.type


def unwrap(node: Node) -> Node:
    """The node inside any parentheses."""
    while isinstance(node, Paren):
        node = node.expr
    return node


def selectors(node: Node) -> list[VectorSelector]:
    """Every vector selector of an expression, in order (those inside range selectors too)."""
    found: list[VectorSelector] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, VectorSelector):
            found.append(current)
        elif isinstance(current, MatrixSelector):
            found.append(current.selector)
        elif isinstance(current, Call):
            stack.extend(reversed(current.args))
        elif isinstance(current, Aggregation):
            stack.append(current.expr)
            if current.param is not None:
                stack.append(current.param)
        elif isinstance(current, Binary):
            stack.extend((current.rhs, current.lhs))
        elif isinstance(current, (Unary, Paren)):
            stack.append(current.expr)
    return found
