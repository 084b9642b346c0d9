"""A small OData `$filter` parser for the simulator: `eq`/`ne` comparisons joined by `and`/`or`,
and Dataverse's `Microsoft.Dynamics.CRM.In(PropertyName='col',PropertyValues=['a','b'])` query
function (Microsoft Learn, Web API function reference "In Function": "Query function that evaluates
whether the value exists in a list of values"; parameters PropertyName Edm.String and
PropertyValues Collection(Edm.String)).

Literals are parsed the way Dataverse does: single-quoted, a doubled quote stands for one quote,
and an unterminated literal is a syntax error. Comparisons of strings are case-insensitive.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]


class FilterSyntaxError(ValueError):
    """The filter text is not valid OData (the simulator answers 400)."""


class UnknownColumn(ValueError):
    """The filter names a column the entity does not have."""


# Dots join the namespace of a query function's name (`Microsoft.Dynamics.CRM.In`).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
QUERY_FUNCTION_IN = "microsoft.dynamics.crm.in"
# A GUID is written unquoted in an OData filter (`leadid eq 8f2e…`), as Dataverse expects for
# uniqueidentifier columns (Microsoft Learn, "Filter rows" in the Web API query guide).
_GUID_LITERAL = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}(?![0-9A-Za-z_-])")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def tokenize(text: str) -> list[tuple[str, Any]]:
    """Split a filter into (kind, value) tokens.

    Raises:
        FilterSyntaxError: an unterminated string literal or a stray character.
    """
    tokens: list[tuple[str, Any]] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "()[],=":
            tokens.append((char, char))
            i += 1
        elif char == "'":
            i, literal = _literal(text, i)
            tokens.append(("string", literal))
        elif match := _GUID_LITERAL.match(text, i):
            tokens.append(("string", match.group(0).lower()))
            i = match.end()
        elif match := _NUMBER.match(text, i):
            tokens.append(("number", float(match.group(0))))
            i = match.end()
        elif match := _NAME.match(text, i):
            tokens.append(("name", match.group(0)))
            i = match.end()
        else:
            raise FilterSyntaxError(f"Syntax error at position {i} in '{text}'.")
    return tokens


def _literal(text: str, start: int) -> tuple[int, str]:
    out: list[str] = []
    i = start + 1
    while i < len(text):
        if text[i] == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                out.append("'")
                i += 2
                continue
            return i + 1, "".join(out)
        out.append(text[i])
        i += 1
    raise FilterSyntaxError(f"Syntax error: unterminated string literal at position {start} in '{text}'.")


def parse_filter(text: str, columns: set[str]) -> Predicate:
    """A predicate over records for `text`.

    Raises:
        FilterSyntaxError: the text is not a supported filter.
        UnknownColumn: a compared column does not exist.
    """
    tokens = tokenize(text)
    parser = _Parser(tokens, columns, text)
    predicate = parser.expression()
    if parser.pos != len(tokens):
        raise FilterSyntaxError(f"Syntax error at token {parser.pos} in '{text}'.")
    return predicate


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]], columns: set[str], text: str) -> None:
        self.tokens = tokens
        self.columns = columns
        self.text = text
        self.pos = 0

    def _peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, Any]:
        token = self._peek()
        if token is None:
            raise FilterSyntaxError(f"Syntax error: unexpected end of '{self.text}'.")
        self.pos += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token and token[0] == "name" and token[1].lower() == word:
            self.pos += 1
            return True
        return False

    def expression(self) -> Predicate:
        left = self.conjunction()
        while self._keyword("or"):
            right = self.conjunction()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def conjunction(self) -> Predicate:
        left = self.comparison()
        while self._keyword("and"):
            right = self.comparison()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def comparison(self) -> Predicate:
        kind, value = self._take()
        if kind == "(":
            inner = self.expression()
            if self._take()[0] != ")":
                raise FilterSyntaxError(f"Syntax error: ')' expected in '{self.text}'.")
            return inner
        if kind != "name":
            raise FilterSyntaxError(f"Syntax error: column name expected in '{self.text}'.")
        if value.lower() == QUERY_FUNCTION_IN:
            return self.function_in()
        if "." in value:
            raise FilterSyntaxError(f"Syntax error: unknown function '{value}' in '{self.text}'.")
        column = value.lower()
        if column not in self.columns:
            raise UnknownColumn(column)
        op_kind, op = self._take()
        if op_kind != "name" or op.lower() not in ("eq", "ne"):
            raise FilterSyntaxError(f"Syntax error: 'eq' or 'ne' expected in '{self.text}'.")
        lit_kind, literal = self._take()
        if lit_kind == "name" and literal.lower() == "null":
            literal = None
        elif lit_kind not in ("string", "number"):
            raise FilterSyntaxError(f"Syntax error: a literal expected in '{self.text}'.")
        negate = op.lower() == "ne"
        return lambda record: _equals(record.get(column), literal) != negate

    def _expect(self, kind: str) -> Any:
        token = self._take()
        if token[0] != kind:
            raise FilterSyntaxError(f"Syntax error: '{kind}' expected in '{self.text}'.")
        return token[1]

    def function_in(self) -> Predicate:
        """`(PropertyName='col',PropertyValues=['a',…])`, the parameters in either order."""
        self._expect("(")
        arguments: dict[str, Any] = {}
        while True:
            name = str(self._expect("name"))
            self._expect("=")
            if name == "PropertyName":
                arguments[name] = self._expect("string")
            elif name == "PropertyValues":
                arguments[name] = self._string_list()
            else:
                raise FilterSyntaxError(f"Syntax error: unknown parameter '{name}' of In in '{self.text}'.")
            if self._take()[0] == ")":
                break
        if set(arguments) != {"PropertyName", "PropertyValues"}:
            raise FilterSyntaxError(f"Syntax error: In needs PropertyName and PropertyValues in '{self.text}'.")
        column = str(arguments["PropertyName"]).lower()
        if column not in self.columns:
            raise UnknownColumn(column)
        wanted = {str(value).casefold() for value in arguments["PropertyValues"]}
        return lambda record: isinstance(record.get(column), str) and record[column].casefold() in wanted

    def _string_list(self) -> list[str]:
        self._expect("[")
        values: list[str] = []
        if self._peek() == ("]", "]"):
            self._take()
            return values
        while True:
            values.append(str(self._expect("string")))
            separator = self._take()[0]
            if separator == "]":
                return values
            if separator != ",":
                raise FilterSyntaxError(f"Syntax error: ',' or ']' expected in '{self.text}'.")


def _equals(actual: Any, literal: Any) -> bool:
    if isinstance(actual, str) and isinstance(literal, str):
        return actual.casefold() == literal.casefold()
    if isinstance(actual, int | float) and isinstance(literal, int | float):
        return float(actual) == float(literal)
    return bool(actual == literal)
