"""How lavaan reads a model text into statements, as tokens: its lexical rules (names, numbers,
quoted labels, operators, punctuation; nothing else is a token) and its statement rule. The
allow-list (vaar.sem.grammar) checks the statements these give."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vaar.errors import VaarError

NAME = r"(?:[A-Za-z]|\.[A-Za-z_])[A-Za-z0-9._]*"
_TOKEN = re.compile(
    rf"""(?P<space>[ \t\r\f\v]+)
    |(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<name>{NAME})
    |(?P<string>"[^"\n]*")
    |(?P<op>~\*~|=~|~~|<~|:=|==|~|<|>|\|)
    |(?P<punct>[-+*/^(),])""",
    re.VERBOSE,
)
_COMMENT = re.compile(r"[#!].*")


class ModelSyntaxError(VaarError):
    """A model that is not in the allow-list: the message names the line and the token."""


@dataclass(frozen=True)
class Token:
    kind: str  # number, name, string, op, punct
    text: str
    line: int


def tokens_of(line: str, number: int, source: str) -> list[Token]:
    line = line.replace("\u02dc", "~")  # lavaan reads the small tilde as ~ (copied from PDFs)
    out, pos = [], 0
    while pos < len(line):
        match = _TOKEN.match(line, pos)
        if match is None:
            char = line[pos]
            what = "a quote that is not closed" if char == '"' else f"the character {char!r}"
            raise ModelSyntaxError(f"{source}, line {number}: {what} is not allowed")
        if match.lastgroup != "space":
            out.append(Token(match.lastgroup, match.group(), number))
        pos = match.end()
    return out


def split_statements(syntax: str, source: str) -> list[list[Token]]:
    """lavaan's statement rule: `#` and `!` start comments, `;` separates statements, a line
    without an operator continues the statement before it, and a line with one completes a
    statement that has none yet (`efa("b")*f1 +` then `efa("b")*f2 =~ ...`)."""
    statements: list[list[Token]] = []
    for number, raw in enumerate(syntax.split("\n"), start=1):  # lavaan splits on \n only
        for part in _COMMENT.sub("", raw).split(";"):
            tokens = tokens_of(part, number, source)
            if not tokens:
                continue
            if statements and not (_has_operator(tokens) and _has_operator(statements[-1])):
                statements[-1].extend(tokens)
            else:
                statements.append(tokens)
    return statements


def _has_operator(tokens: list[Token]) -> bool:
    return any(t.kind == "op" for t in tokens)
