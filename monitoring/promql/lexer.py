"""The PromQL lexer: turns a query into tokens (numbers, strings, durations, identifiers,
operators), scanning character by character as Prometheus' own lexer does."""

import math
from dataclasses import dataclass
from enum import StrEnum

from .errors import BadDataError


class Kind(StrEnum):
    NUMBER = "number"
    STRING = "string"
    DURATION = "duration"
    IDENT = "identifier"
    OP = "operator"  # + - * / % ^ == != < <= > >= =~ !~ =
    PUNCT = "punctuation"  # ( ) { } [ ] , : @
    EOF = "end of input"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str  # as written
    pos: int  # offset of the first character
    value: float | str | int | None = None  # number, unquoted string, duration in ms

    def describe(self) -> str:
        if self.kind is Kind.EOF:
            return "end of input"
        if self.kind in (Kind.OP, Kind.PUNCT):
            return f'"{self.text}"'
        return f'{self.kind.value} "{self.text}"'


class LexError(BadDataError):
    def __init__(self, message: str, pos: int):
        super().__init__(message)
        self.message = message
        self.pos = pos


TWO_CHAR_OPS = ("==", "!=", "<=", ">=", "=~", "!~")
ONE_CHAR_OPS = "+-*/%^<>="
PUNCTUATION = "(){}[],:@"
# Duration units and their length in milliseconds, in the only order they may appear.
DURATION_UNITS = (("y", 365 * 86_400_000), ("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000),
                  ("m", 60_000), ("s", 1000), ("ms", 1))  # fmt: skip
SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
HEX_DIGITS = "0123456789abcdefABCDEF"


def _is_ident_start(char: str) -> bool:
    return char != "" and char.isascii() and (char.isalpha() or char == "_")


def _is_word_char(char: str) -> bool:
    """What may not directly follow a number or duration (`:` may: `x[5m:1m]`)."""
    return char != "" and char.isascii() and (char.isalnum() or char == "_")


def _is_ident_char(char: str) -> bool:
    # `char` is "" at the end of the text, and "" is `in` every string.
    return char != "" and char.isascii() and (char.isalnum() or char in "_:")


def tokenize(text: str) -> list[Token]:
    """Every token of `text`, ending with an EOF token. Raises LexError."""
    return list(_Scanner(text).tokens())


class _Scanner:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def peek(self, ahead: int = 0) -> str:
        index = self.pos + ahead
        return self.text[index] if index < len(self.text) else ""

    def tokens(self):
        text = self.text
        while True:
            self._skip_space_and_comments()
            if self.pos >= len(text):
                yield Token(Kind.EOF, "", self.pos)
                return
            start = self.pos
            char = text[start]
            if char.isdigit() or (char == "." and self.peek(1).isdigit()):
                yield self._number_or_duration()
            elif _is_ident_start(char):
                yield self._identifier()
            elif char in "\"'`":
                yield self._string()
            elif text.startswith(TWO_CHAR_OPS, start):
                self.pos += 2
                yield Token(Kind.OP, text[start : start + 2], start)
            elif char == "!":
                raise LexError("unexpected character after '!'", start)
            elif char in ONE_CHAR_OPS:
                self.pos += 1
                yield Token(Kind.OP, char, start)
            elif char in PUNCTUATION:
                self.pos += 1
                yield Token(Kind.PUNCT, char, start)
            else:
                raise LexError(f"unexpected character: {char!r}", start)

    def _skip_space_and_comments(self) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\n\r":
                self.pos += 1
            elif char == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end + 1
            else:
                return

    def _digits(self, allowed: str = "0123456789") -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in allowed:
            self.pos += 1
        return self.text[start : self.pos]

    def _number_or_duration(self) -> Token:
        start = self.pos
        duration = self._duration()
        if duration is not None:
            return Token(Kind.DURATION, self.text[start : self.pos], start, duration)
        self.pos = start
        if self.peek() == "0" and self.peek(1) in ("x", "X") and self.peek(2) and self.peek(2) in HEX_DIGITS:
            self.pos += 2
            self._digits(HEX_DIGITS)
            value = float(int(self.text[start + 2 : self.pos], 16))
        else:
            self._digits()
            if self.peek() == ".":
                self.pos += 1
                self._digits()
            if self.peek() in ("e", "E") and (
                self.peek(1).isdigit() or (self.peek(1) in ("+", "-") and self.peek(2).isdigit())
            ):
                self.pos += 2
                self._digits()
            value = float(self.text[start : self.pos])
        if _is_word_char(self.peek()) or self.peek() == ".":
            while _is_word_char(self.peek()) or self.peek() == ".":
                self.pos += 1
            raise LexError(f'bad number or duration syntax: "{self.text[start : self.pos]}"', start)
        return Token(Kind.NUMBER, self.text[start : self.pos], start, value)

    def _duration(self) -> int | None:
        """A duration such as 5m or 1h30m at the current position (in ms), else None."""
        total = 0
        next_unit = 0
        found = False
        while self.peek().isdigit():
            digits = self._digits()
            for index in range(next_unit, len(DURATION_UNITS)):
                unit, length = DURATION_UNITS[index]
                if self.text.startswith(unit, self.pos) and not (unit == "m" and self.peek(1) == "s"):
                    self.pos += len(unit)
                    total += int(digits) * length
                    next_unit = index + 1
                    found = True
                    break
            else:
                return None
        if not found or _is_word_char(self.peek()):
            return None
        return total

    def _identifier(self) -> Token:
        start = self.pos
        while _is_ident_char(self.peek()):
            self.pos += 1
        word = self.text[start : self.pos]
        if word.lower() in ("inf", "nan"):
            return Token(Kind.NUMBER, word, start, math.inf if word.lower() == "inf" else math.nan)
        return Token(Kind.IDENT, word, start, word)

    def _string(self) -> Token:
        start = self.pos
        quote = self.text[start]
        self.pos += 1
        if quote == "`":
            end = self.text.find("`", self.pos)
            if end < 0:
                raise LexError("unterminated raw string", start)
            self.pos = end + 1
            return Token(Kind.STRING, self.text[start : self.pos], start, self.text[start + 1 : end])
        chars: list[str] = []
        while True:
            char = self.peek()
            if char == "" or char == "\n":
                raise LexError("unterminated quoted string", start)
            self.pos += 1
            if char == quote:
                return Token(Kind.STRING, self.text[start : self.pos], start, "".join(chars))
            if char == "\\":
                chars.append(self._escape(quote))
            else:
                chars.append(char)

    def _escape(self, quote: str) -> str:
        """The character of a Go-style escape sequence (the backslash already consumed)."""
        at = self.pos - 1
        char = self.peek()
        self.pos += 1
        if char == "":
            raise LexError("unterminated quoted string", at)
        if char in SIMPLE_ESCAPES:
            return SIMPLE_ESCAPES[char]
        if char == quote:
            return quote
        lengths = {"x": 2, "u": 4, "U": 8}
        if char in lengths:
            digits = self.text[self.pos : self.pos + lengths[char]]
            if len(digits) != lengths[char] or any(d not in HEX_DIGITS for d in digits):
                raise LexError("invalid escape sequence in string", at)
            self.pos += lengths[char]
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise LexError("invalid escape sequence in string", at)
            return chr(code)
        if char and char in "01234567":
            digits = self.text[self.pos - 1 : self.pos + 2]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise LexError("invalid escape sequence in string", at)
            self.pos += 2
            return chr(int(digits, 8))
        raise LexError("unknown escape sequence in string", at)
