"""``-k`` keyword expressions, as in pytest: ``and``, ``or``, ``not``, parentheses, and words that
match when they are a substring (case-insensitive) of any of a case's names: its node id
``file.yaml::id``, its op, its dtype and its tags."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from conformance.cases import Case

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


class ExpressionError(ValueError):
    pass


def compile_keyword(expression: str) -> Callable[[Iterable[str]], bool]:
    """Parse ``expression`` once; the result tests a collection of names."""
    tokens = _TOKEN.findall(expression)
    if not tokens:
        raise ExpressionError("empty -k expression")
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ExpressionError(f"-k {expression!r}: unexpected end of expression")
        pos += 1
        return tokens[pos - 1]

    def parse_or() -> Callable[[list[str]], bool]:
        left = parse_and()
        while peek() == "or":
            take()
            left = (lambda a, b: lambda n: a(n) or b(n))(left, parse_and())
        return left

    def parse_and() -> Callable[[list[str]], bool]:
        left = parse_not()
        while peek() == "and":
            take()
            left = (lambda a, b: lambda n: a(n) and b(n))(left, parse_not())
        return left

    def parse_not() -> Callable[[list[str]], bool]:
        if peek() == "not":
            take()
            inner = parse_not()
            return lambda n: not inner(n)
        token = take()
        if token == "(":
            inner = parse_or()
            if take() != ")":
                raise ExpressionError(f"-k {expression!r}: missing ')'")
            return inner
        if token in (")", "and", "or"):
            raise ExpressionError(f"-k {expression!r}: unexpected {token!r}")
        word = token.lower()
        return lambda names: any(word in name for name in names)

    matcher = parse_or()
    if pos != len(tokens):
        raise ExpressionError(f"-k {expression!r}: unexpected {tokens[pos]!r}")
    return lambda names: matcher([n.lower() for n in names])


def case_names(case: Case) -> list[str]:
    return [case.nodeid, case.op, case.dtype, *case.tags]


def filter_cases(cases: Iterable[Case], expression: str | None) -> list[Case]:
    if not expression:
        return list(cases)
    matches = compile_keyword(expression)
    return [c for c in cases if matches(case_names(c))]
