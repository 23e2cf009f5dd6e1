"""The allow-list for lavaan model syntax, checked in Python before any R sees a model.

lavaan 0.6-14 evaluates parts of a model text as R code: a modifier without variable names
(`2*x1`, `start(...)*x1`, `c(...)*x1`, `label(...)*x1`, any `f(...)*x1`, on either side of the
operator), the right-hand side of `:=`, and both sides of `==`, `<`, `>` (turned into R
functions with parse(text=)). lavaan strips quotes and spaces first, but code made of numbers
and calls survives (`file.create(rawToChar(as.raw(c(...))))`). So a model passes only when each
statement fits the small grammar below, and R gets the text rebuilt from the accepted tokens
(one statement per line, no comments): whatever lavaan's own preprocessing does (comments,
`;`, joining lines, removing spaces), it can only see what this check saw.

The grammar is data (the tables below; docs/sem.md explains them):

    statement  := formula | defined | constraint        (one operator per statement)
    formula    := lhs FORMULA_OPERATOR term ('+' term)*
    lhs        := lhs_item ('+' lhs_item)*              (one item for ~*~)
    lhs_item   := [LHS_MODIFIER '(' STRING ')' '*'] NAME (LHS_MODIFIERS only left of =~)
    term       := [modifier '*'] (NAME | '0' | '1')
    modifier   := NAME | STRING | 'NA' | MODIFIER '(' arguments ')' | value ('/' value)*
    defined    := NAME ':=' expression
    constraint := expression ('==' | '<' | '>') expression
    expression := arithmetic (+ - * / ^, unary minus, parentheses) over labels, numbers and
                  FUNCTIONS; a modifier's value is the same over numbers only (and Inf)

NAME is a variable or label (letters, digits, `.`, `_`; not an R reserved word), STRING a
quoted label (a name, or an automatic parameter name such as "x1~1" for equal()).
"""

from __future__ import annotations

import re

from vaar.sem.tokens import NAME, ModelSyntaxError, Token, split_statements

# ?model.syntax (lavaan 0.6-14): the operators of a formula, lhs OPERATOR terms.
FORMULA_OPERATORS = {
    "=~": "latent variable definition (f =~ x1 + x2)",
    "~": "regression, or intercept with ~ 1",
    "~~": "variance or covariance",
    "|": "thresholds of an ordinal variable (x1 | t1 + t2)",
    "~*~": "scaling factor (x1 ~*~ x1)",
    "<~": "formative factor",
}
# Operators whose sides lavaan turns into R code: arithmetic over labels and numbers only.
DEFINED_OPERATOR = ":="
CONSTRAINT_OPERATORS = {
    "==": "equality constraint (a == b)",
    "<": "inequality constraint (a < b)",
    ">": "inequality constraint (a > b)",
}
OPERATORS = {**FORMULA_OPERATORS, DEFINED_OPERATOR: "defined parameter", **CONSTRAINT_OPERATORS}

# Modifier functions (term = MODIFIER(...)*x) and what their arguments may be:
# "values" = numbers, NA, Inf or arithmetic on numbers; "labels" = names, quoted labels, NA;
# either may also come as one c(...) vector (one element per group).
MODIFIERS = {
    "c": "values or labels",  # c(0.6, 0.8)*x3, c(NA, 1)*x3, c(a1, a2)*x3
    "start": "values",  # start(0.5)*x2, start(c(1.2, 0.6))*x2
    "label": "labels",  # label("a")*x2
    "equal": "labels",  # equal("x1~1")*1
    "lower": "values",  # lower(0)*x2
    "upper": "values",  # upper(10)*x2
}
LHS_MODIFIERS = {"efa": "the exploratory factor block a factor belongs to"}  # efa("b1")*f1
# Functions an expression may call; each takes one argument.
FUNCTIONS = ("abs", "sqrt", "exp", "log", "log10", "pnorm")
ARITHMETIC = ("+", "-", "*", "/", "^")
CONSTANTS = {"NA": "a free parameter (NA*x1), or an element of c()", "Inf": "an unbounded bound"}
MAX_DEPTH = 32  # nested parentheses and calls
# R's reserved words (?Reserved): never a variable or label name.
RESERVED = frozenset(
    ("if", "else", "repeat", "while", "function", "for", "in", "next", "break", "TRUE", "FALSE")
    + ("NULL", "Inf", "NaN", "NA", "NA_integer_", "NA_real_", "NA_character_", "NA_complex_")
)

# A quoted label: a name, or an automatic parameter name (lhs op rhs) for equal("x1~1").
_STRING_LABEL = re.compile(rf"{NAME}(?:(?:=~|~~|~\*~|<~|~|\|)(?:{NAME}|1))?")


def is_parameter_name(text: str) -> bool:
    """A lavaan parameter name as group.partial takes it ("x1~1", "f=~x2", "x1|t1")."""
    return isinstance(text, str) and _STRING_LABEL.fullmatch(text) is not None


def check_model(syntax: str, source: str = "invalid lavaan model syntax") -> str:
    """The model rebuilt from its tokens (one statement per line, comments gone) when every
    statement fits the grammar; ModelSyntaxError naming `source`, the line and the offending
    token otherwise. Pure Python: no R is started, whatever the text."""
    if not isinstance(syntax, str) or not syntax.strip():
        raise ModelSyntaxError(f"{source}: the model is empty")
    statements = split_statements(syntax, source)
    if not statements:
        raise ModelSyntaxError(f"{source}: the model has only comments")
    return "\n".join(_Statement(tokens, source).check() for tokens in statements) + "\n"


def _show(token: Token | None) -> str:
    return "the end of the statement" if token is None else repr(token.text[:40])


class _Statement:
    """A recursive-descent check of one statement's tokens."""

    def __init__(self, tokens: list[Token], source: str):
        self.tokens = tokens
        self.source = source
        self.pos = 0
        self.depth = 0

    # helpers -------------------------------------------------------------------------------
    def fail(self, problem: str, token: Token | None = None):
        line = (token or self.tokens[min(self.pos, len(self.tokens) - 1)]).line
        raise ModelSyntaxError(f"{self.source}, line {line}: {problem}")

    def peek(self, offset: int = 0) -> Token | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def at(self, *texts: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token is not None and token.kind in ("op", "punct") and token.text in texts

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            self.fail("the statement ends too early")
        self.pos += 1
        return token

    def expect(self, text: str, after: str) -> None:
        if not self.at(text):
            self.fail(f"expected {text!r} {after}, found {_show(self.peek())}", self.peek())
        self.pos += 1

    def name(self, role: str) -> Token:
        token = self.peek()
        if token is None or token.kind != "name":
            self.fail(f"expected a {role} name, found {_show(token)}", token)
        if token.text in RESERVED:
            self.fail(f"{token.text!r} is an R reserved word, not a {role} name", token)
        self.pos += 1
        return token

    def end_of(self, ends: tuple[str, ...]) -> bool:
        return self.peek() is None or self.at(*ends)

    # statements ----------------------------------------------------------------------------
    def check(self) -> str:
        ops = [t for t in self.tokens if t.kind == "op"]
        if not ops:
            known = " ".join(OPERATORS)
            self.fail(f"no lavaan operator ({known}) in {_show(self.tokens[0])}...", self.tokens[0])
        if len(ops) > 1:
            self.fail(
                f"more than one operator in one statement ({ops[0].text!r} and "
                f"{ops[1].text!r}); put each on its own line",
                ops[1],
            )
        (op,) = ops
        if op is self.tokens[0]:
            self.fail(f"nothing on the left of {op.text!r}", op)
        if op is self.tokens[-1]:
            self.fail(f"nothing on the right of {op.text!r}", op)
        if op.text in FORMULA_OPERATORS:
            self.formula(op)
        elif op.text == DEFINED_OPERATOR:
            self.name("defined parameter")
            self.expect(op.text, "after the defined parameter's name")
            self.expression(names=True, ends=())
        else:
            self.expression(names=True, ends=(op.text,))
            self.expect(op.text, "in the constraint")
            self.expression(names=True, ends=())
        if self.peek() is not None:
            self.fail(f"unexpected {_show(self.peek())}", self.peek())
        return render(self.tokens)

    def formula(self, op: Token) -> None:
        while True:
            if self.at("(", offset=1) and self.peek().kind == "name":
                self.lhs_modifier(op)
            self.name("variable")
            if self.at(op.text):
                break
            if op.text == "~*~" or not self.at("+"):
                self.fail(f"unexpected {_show(self.peek())} left of {op.text!r}", self.peek())
            self.take()
        self.take()  # the operator
        while True:
            self.term()
            if self.peek() is None:
                return
            self.expect("+", "between terms")

    def lhs_modifier(self, op: Token) -> None:
        token = self.take()
        if token.text not in LHS_MODIFIERS or op.text != "=~":
            allowed = ", ".join(f"{m}()" for m in LHS_MODIFIERS)
            self.fail(
                f"modifier {token.text + '()'!r} is not allowed left of {op.text!r} "
                f"(allowed: {allowed} left of '=~')",
                token,
            )
        self.take()  # (
        self.string()
        self.expect(")", f"to close {token.text}(")
        self.expect("*", f"after {token.text}(...)")

    def term(self) -> None:
        token = self.peek()
        if token is None or self.at("+"):
            self.fail(f"expected a term, found {_show(token)}", token)
        alone = self.peek(1) is None or self.at("+", offset=1)
        if token.kind in ("name", "number") and alone:
            self.target()
            return
        self.modifier()
        self.expect("*", "between a modifier and its variable")
        self.target()

    def target(self) -> None:
        token = self.peek()
        if token.kind == "number":
            if token.text not in ("0", "1"):
                self.fail(f"a number term must be 0 or 1 (an intercept is ~ 1), not {_show(token)}",
                          token)  # fmt: skip
            self.take()
        else:
            self.name("variable")
        if not self.end_of(("+",)):
            self.fail(f"unexpected {_show(self.peek())} after {token.text!r}", self.peek())

    def modifier(self) -> None:
        token = self.peek()
        call = token.kind == "name" and self.at("(", offset=1)
        if call and token.text not in MODIFIERS and token.text not in FUNCTIONS:
            allowed = ", ".join(f"{f}()" for f in (*MODIFIERS, *FUNCTIONS))
            self.fail(f"modifier {token.text + '()'!r} is not allowed (allowed: {allowed})", token)
        if token.kind == "string":
            self.string()
        elif call and token.text in MODIFIERS:
            self.take()
            self.take()
            self.arguments(MODIFIERS[token.text], vector=token.text == "c", call=token.text)
        elif token.kind == "name" and token.text == "NA":
            self.take()
        elif token.kind == "name" and not call and token.text != "Inf":
            self.name("label")
        else:
            self.value(ends=("*",))

    def arguments(self, kind: str, *, vector: bool, call: str) -> None:
        """A modifier's arguments up to its ')': values, labels, or (once) a c() of them."""
        seen = set()
        while True:
            token = self.peek()
            if token is None:
                self.fail(f"{call}( is not closed")
            if not vector and token.text == "c" and self.at("(", offset=1):
                self.take()
                self.take()
                self.arguments(kind, vector=True, call="c")
            elif token.kind == "name" and token.text == "NA":
                self.take()
            elif kind != "values" and token.kind == "string":
                self.string()
                seen.add("labels")
            elif kind != "values" and token.kind == "name" and not self.at("(", offset=1):
                if token.text == "Inf":
                    self.fail(f"'Inf' is not a label in {call}()", token)
                self.name("label")
                seen.add("labels")
            elif kind == "labels":
                self.fail(f"{call}() takes labels, not {_show(token)}", token)
            else:
                self.expression(names=False, ends=(",", ")"))
                seen.add("values")
            if len(seen) > 1:
                self.fail(f"{call}() mixes numbers and labels", token)
            if self.at(")"):
                self.take()
                return
            self.expect(",", f"between the arguments of {call}()")

    def string(self) -> None:
        token = self.take()
        if token.kind != "string" or not _STRING_LABEL.fullmatch(token.text[1:-1]):
            self.fail(
                f"{_show(token)} is not a label (a quoted label is a name, or a parameter "
                'name such as "x1~1")',
                token,
            )

    # arithmetic ----------------------------------------------------------------------------
    def value(self, ends: tuple[str, ...]) -> None:
        """A modifier's number: numbers, Inf, calls and parentheses; '/' at the top level
        (R reads `1/2*x1` as (1/2)*x1; a top-level + - * would split the term)."""
        self.unary(names=False)
        while self.at("/"):
            self.take()
            self.unary(names=False)
        if not self.end_of(ends):
            self.fail(f"unexpected {_show(self.peek())} in a modifier", self.peek())

    def expression(self, *, names: bool, ends: tuple[str, ...]) -> None:
        self.unary(names)
        while self.at(*ARITHMETIC):
            self.take()
            self.unary(names)
        if not self.end_of(ends + (")", ",")):
            self.fail(f"unexpected {_show(self.peek())} in an expression", self.peek())

    def unary(self, names: bool) -> None:
        while self.at("-", "+"):
            self.take()
        self.primary(names)
        if self.at("^"):
            self.take()
            self.deeper()
            self.unary(names)
            self.depth -= 1

    def primary(self, names: bool) -> None:
        token = self.peek()
        if token is None:
            self.fail("the expression ends too early")
        if token.kind == "number":
            self.take()
        elif token.kind == "name" and self.at("(", offset=1):
            if token.text not in FUNCTIONS:
                self.fail(
                    f"function {token.text + '()'!r} is not allowed "
                    f"(allowed: {', '.join(f + '()' for f in FUNCTIONS)})",
                    token,
                )
            self.take()
            self.nested(names)
        elif token.kind == "name" and token.text == "Inf" and not names:
            self.take()
        elif token.kind == "name" and names:
            self.name("label")
        elif self.at("("):
            self.nested(names)
        else:
            where = "a number or a label" if names else "a number"
            self.fail(f"expected {where}, found {_show(token)}", token)

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"more than {MAX_DEPTH} nested parentheses, calls or powers", self.peek())

    def nested(self, names: bool) -> None:
        """( expression ): the bracket of a call or a parenthesis."""
        self.deeper()
        self.expect("(", "")
        self.expression(names=names, ends=(")",))
        self.expect(")", "to close the parenthesis")
        self.depth -= 1


def render(tokens: list[Token]) -> str:
    """A statement from its tokens: readable, and exactly what was checked (lavaan removes
    all spaces anyway, and no two checked tokens glue into another R token)."""
    out = ""
    for i, token in enumerate(tokens):
        previous = tokens[i - 1] if i else None
        before = tokens[i - 2] if i > 1 else None
        unary_sign = (
            previous is not None
            and previous.text in ("-", "+")
            and (before is None or before.kind == "op" or before.text in ("(", ",", *ARITHMETIC))
        )
        tight = (
            previous is None
            or previous.text in ("(", "*", "/", "^")
            or token.text in (")", ",", "*", "/", "^")
            or (token.text == "(" and previous.kind == "name")
            or unary_sign
        )
        out += ("" if tight else " ") + token.text
    return out
