"""The workflow expression language: `${{ steps.build.outputs.tag }}`, `inputs.env == 'prod'`.

A small, safe language (parsed here, never `eval`): literals (`'text'`, `"text"`, numbers,
`true`, `false`, `null`), paths rooted at `inputs` or `steps` (`steps.a.outputs.key`,
`inputs['name']`), comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`), boolean logic (`&&`, `||`,
`!`), parentheses, and the functions `contains(haystack, needle)`, `startsWith(s, prefix)`,
`endsWith(s, suffix)`. A path that does not exist evaluates to null.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROOTS = ("inputs", "steps")
_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|<=|>=|&&|\|\||[<>!().,\[\]])
      | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
    )""",
    re.VERBOSE,
)
_TEMPLATE_RE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
MAX_EXPRESSION_LENGTH = 1000


class ExpressionError(ValueError):
    """Raised for an expression that cannot be parsed; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class Path:
    parts: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]


Node = Literal | Path | Unary | Binary | Call
"""A parsed expression."""

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "contains": lambda hay, needle: needle in hay if isinstance(hay, str | list | dict) else False,
    "startsWith": lambda s, p: isinstance(s, str) and isinstance(p, str) and s.startswith(p),
    "endsWith": lambda s, p: isinstance(s, str) and isinstance(p, str) and s.endswith(p),
}


def _tokenize(text: str) -> list[tuple[str, str]]:
    if len(text) > MAX_EXPRESSION_LENGTH:
        msg = f"expression is longer than {MAX_EXPRESSION_LENGTH} characters"
        raise ExpressionError(msg)
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN_RE.match(text, position)
        if not match or match.end() == position:
            msg = f"unexpected character {text[position:].strip()[:1]!r} at position {position}"
            raise ExpressionError(msg)
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            found = "the end" if token is None else repr(token[1])
            msg = f"expected {value or 'a value'} but found {found}"
            raise ExpressionError(msg)
        self.index += 1
        return token

    def parse(self) -> Node:
        if not self.tokens:
            msg = "empty expression"
            raise ExpressionError(msg)
        node = self.logical("||", self.conjunction)
        if self.peek() is not None:
            msg = f"unexpected {self.peek()[1]!r} after a complete expression"  # type: ignore[index]
            raise ExpressionError(msg)
        return node

    def logical(self, op: str, operand: Callable[[], Node]) -> Node:
        node = operand()
        while self.peek() == ("op", op):
            self.take()
            node = Binary(op, node, operand())
        return node

    def conjunction(self) -> Node:
        return self.logical("&&", self.negation)

    def negation(self) -> Node:
        if self.peek() == ("op", "!"):
            self.take()
            return Unary("!", self.negation())
        return self.comparison()

    def comparison(self) -> Node:
        node = self.primary()
        token = self.peek()
        if token and token[0] == "op" and token[1] in {"==", "!=", "<", "<=", ">", ">="}:
            self.take()
            node = Binary(token[1], node, self.primary())
        return node

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "number":
            return Literal(float(value) if "." in value else int(value))
        if kind == "string":
            return Literal(_unquote(value))
        if kind == "op" and value == "(":
            node = self.logical("||", self.conjunction)
            self.take(")")
            return node
        if kind == "name":
            return self.name(value)
        msg = f"unexpected {value!r}"
        raise ExpressionError(msg)

    def name(self, value: str) -> Node:
        constants = {"true": True, "false": False, "null": None}
        if value in constants:
            return Literal(constants[value])
        if self.peek() == ("op", "("):
            return self.call(value)
        if value not in ROOTS:
            msg = f"unknown name '{value}'; paths start with inputs. or steps."
            raise ExpressionError(msg)
        parts = [value]
        while self.peek() in {("op", "."), ("op", "[")}:
            if self.take()[1] == ".":
                parts.append(self.take_kind("name"))
            else:
                kind, key = self.take()
                if kind not in {"string", "number"}:
                    msg = "an index must be a string or a number"
                    raise ExpressionError(msg)
                parts.append(_unquote(key) if kind == "string" else key)
                self.take("]")
        return Path(tuple(parts))

    def take_kind(self, kind: str) -> str:
        token = self.take()
        if token[0] != kind:
            msg = f"expected a name but found {token[1]!r}"
            raise ExpressionError(msg)
        return token[1]

    def call(self, name: str) -> Node:
        if name not in _FUNCTIONS:
            msg = f"unknown function '{name}'; known: {', '.join(sorted(_FUNCTIONS))}"
            raise ExpressionError(msg)
        self.take("(")
        args: list[Node] = []
        while self.peek() != ("op", ")"):
            args.append(self.logical("||", self.conjunction))
            if self.peek() != ("op", ")"):
                self.take(",")
        self.take(")")
        if len(args) != 2:
            msg = f"{name}() takes 2 arguments, got {len(args)}"
            raise ExpressionError(msg)
        return Call(name, tuple(args))


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def parse_expression(text: str) -> Node:
    """Parse an expression (without `${{ }}`) or raise ExpressionError."""
    return _Parser(text).parse()


def paths_in(node: Node) -> list[Path]:
    """Every path an expression reads, for validation at save time."""
    if isinstance(node, Path):
        return [node]
    if isinstance(node, Unary):
        return paths_in(node.operand)
    if isinstance(node, Binary):
        return paths_in(node.left) + paths_in(node.right)
    if isinstance(node, Call):
        return [p for arg in node.args for p in paths_in(arg)]
    return []


def evaluate(node: Node, context: dict[str, Any]) -> Any:
    """Evaluate a parsed expression against `{"inputs": …, "steps": …}`."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Path):
        value: Any = context
        for part in node.parts:
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value
    if isinstance(node, Unary):
        return not truthy(evaluate(node.operand, context))
    if isinstance(node, Call):
        try:
            return _FUNCTIONS[node.name](*(evaluate(a, context) for a in node.args))
        except (TypeError, ValueError):
            return False  # e.g. contains(object, list): a predicate over odd values is false
    return _binary(node, context)


def _binary(node: Binary, context: dict[str, Any]) -> Any:
    if node.op == "&&":
        return truthy(evaluate(node.left, context)) and truthy(evaluate(node.right, context))
    if node.op == "||":
        return truthy(evaluate(node.left, context)) or truthy(evaluate(node.right, context))
    left, right = evaluate(node.left, context), evaluate(node.right, context)
    if node.op == "==":
        return bool(left == right)
    if node.op == "!=":
        return bool(left != right)
    if not (isinstance(left, int | float) and isinstance(right, int | float)) and not (
        isinstance(left, str) and isinstance(right, str)
    ):
        return False  # ordering across types (or with null) is simply false, never an error
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return comparisons[node.op](left, right)


def truthy(value: Any) -> bool:
    """Null, false, 0, '' and empty collections are false; everything else is true."""
    return bool(value)


def template_expressions(text: str) -> list[str]:
    """The expressions inside `${{ … }}` in a string."""
    return [m.group(1).strip() for m in _TEMPLATE_RE.finditer(text)]


def render_template(value: Any, context: dict[str, Any]) -> Any:
    """Replace `${{ … }}` in strings anywhere inside `value` (dicts and lists included).

    A string that is exactly one `${{ … }}` keeps the result's type; otherwise results are
    inserted as text (JSON for collections, '' for null).
    """
    if isinstance(value, dict):
        return {k: render_template(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_template(v, context) for v in value]
    if not isinstance(value, str) or "${{" not in value:
        return value
    whole = _TEMPLATE_RE.fullmatch(value.strip())
    if whole:
        return evaluate(parse_expression(whole.group(1).strip()), context)

    def replace(match: re.Match[str]) -> str:
        result = evaluate(parse_expression(match.group(1).strip()), context)
        if result is None:
            return ""
        if isinstance(result, dict | list):
            return json.dumps(result, sort_keys=True)
        if isinstance(result, bool):
            return "true" if result else "false"
        return str(result)

    return _TEMPLATE_RE.sub(replace, value)
