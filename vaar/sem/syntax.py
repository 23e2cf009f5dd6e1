"""Editing lavaan model strings as data: split into statements and drop variables (items a
degenerate check removed, and factors left with fewer than two indicators). The statements and
their tokens are lavaan's, as vaar.sem.tokens reads them (the allow-list's reading); lavaan
itself parses the result again before fitting, so a mistake here surfaces as lavaan's error."""

from __future__ import annotations

from dataclasses import dataclass, field

from vaar.sem.grammar import render
from vaar.sem.tokens import Token, split_statements

SOURCE = "lavaan model"
# Statements whose sides are expressions over labels, kept as they are.
EXPRESSION_OPERATORS = (":=", "==", "<", ">")


def statements(syntax: str) -> list[str]:
    """One string per lavaan statement (lavaan's statement rule: comments gone, `;` splits,
    a line without an operator continues the statement before it)."""
    return [render(tokens) for tokens in split_statements(syntax, SOURCE)]


def term_variable(term: list[Token]) -> str:
    """The variable a right-hand-side term names: `0.5*x1`, `c(a,b)*x1`, `x1` -> `x1`."""
    return term[-1].text


def split_statement(tokens: list[Token]) -> tuple[str, str, list[list[Token]]] | None:
    """(left-hand side as text, operator, right-hand-side terms as tokens), or None when the
    statement has no operator."""
    at = next((i for i, t in enumerate(tokens) if t.kind == "op"), None)
    if at is None:
        return None
    return render(tokens[:at]), tokens[at].text, _terms(tokens[at + 1 :])


def _terms(tokens: list[Token]) -> list[list[Token]]:
    """Split on the `+` between terms: outside parentheses (start(0.5) keeps its insides) and
    after an operand (a sign, as in `x1 + -0.5*x2` or `2^+1`, is not a separator)."""
    terms: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        depth += token.text == "("
        depth -= token.text == ")"
        after_operand = bool(terms[-1]) and (
            terms[-1][-1].kind in ("name", "number", "string") or terms[-1][-1].text == ")"
        )
        if token.kind == "punct" and token.text == "+" and depth == 0 and after_operand:
            terms.append([])
        else:
            terms[-1].append(token)
    return [term for term in terms if term]


@dataclass
class Pruned:
    syntax: str
    dropped_factors: list[dict] = field(default_factory=list)  # {factor, reason}
    not_estimable_paths: list[dict] = field(default_factory=list)  # {lhs, op, rhs, reason}


def drop_variables(syntax: str, drop: set[str]) -> Pruned:
    """The model without the variables in `drop`; factors left with fewer than two indicators
    are dropped too (with their remaining items), and regressions that lose a factor are
    reported as not estimable."""
    drop = set(drop)
    dropped_factors: list[dict] = []
    lost_paths: list[dict] = []
    while True:
        kept, short = _prune_once(split_statements(syntax, SOURCE), drop, lost_paths)
        if not short:
            return Pruned("\n".join(kept) + "\n", dropped_factors, lost_paths)
        for factor, left in short.items():
            dropped_factors.append(
                {
                    "factor": factor,
                    "reason": f"fewer than 2 indicators left ({', '.join(left) or 'none'})",
                    "items": left,
                }
            )
            drop.add(factor)
            drop.update(left)


def _prune_once(parts: list[list[Token]], drop: set[str], lost_paths: list[dict]):
    kept: list[str] = []
    short: dict[str, list[str]] = {}
    for tokens in parts:
        split = split_statement(tokens)
        if split is None or split[1] in EXPRESSION_OPERATORS:
            kept.append(render(tokens))
            continue
        lhs, op, terms = split
        if lhs in drop:
            if op == "~" and not _is_intercept(terms):
                lost_paths += [_lost(lhs, op, t, "its outcome was dropped") for t in terms]
            continue
        left = [t for t in terms if term_variable(t) not in drop]
        if op == "~":
            lost_paths += [
                _lost(lhs, op, t, "its predictor was dropped")
                for t in terms
                if term_variable(t) in drop
            ]
        if op == "=~" and len(left) < 2:
            short[lhs] = [term_variable(t) for t in left]
            continue
        if left:
            kept.append(f"{lhs} {op} {' + '.join(render(t) for t in left)}")
    if short:  # redo with the short factors gone; their paths are reported on that pass
        lost_paths.clear()
    return kept, short


def _is_intercept(terms: list[list[Token]]) -> bool:
    return len(terms) == 1 and term_variable(terms[0]) in {"1", "0"}


def _lost(lhs: str, op: str, term: list[Token], reason: str) -> dict:
    return {"lhs": lhs, "op": op, "rhs": term_variable(term), "reason": reason}
