"""Editing lavaan model strings as data: split into statements and drop variables (items a
degenerate check removed, and factors left with fewer than two indicators). lavaan itself
parses the result again before fitting, so a mistake here surfaces as lavaan's error."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OPERATOR = re.compile(r"=~|~~|<~|~\*~|:=|==|~|<|>|\|")
CONTINUES = ("+", "=~", "~", "~~", "*", ":=", "==", "<~", "|")


def statements(syntax: str) -> list[str]:
    """One string per lavaan statement: comments gone, `;` splits, a line ending in an operator
    or a line starting with `+` continues the statement before it."""
    out: list[str] = []
    for raw_line in syntax.splitlines():
        line = re.split(r"[#!]", raw_line, maxsplit=1)[0]
        for part in line.split(";"):
            part = part.strip()
            if not part:
                continue
            if out and (out[-1].endswith(CONTINUES) or part.startswith("+")):
                out[-1] = f"{out[-1]} {part}"
            else:
                out.append(part)
    return out


def term_variable(term: str) -> str:
    """The variable a right-hand-side term names: `0.5*x1`, `c(a,b)*x1`, `x1` -> `x1`."""
    return term.rsplit("*", 1)[-1].strip()


def split_statement(statement: str) -> tuple[str, str, list[str]] | None:
    match = OPERATOR.search(statement)
    if match is None:
        return None
    lhs = statement[: match.start()].strip()
    rhs = statement[match.end() :]
    terms = [t.strip() for t in _split_plus(rhs) if t.strip()]
    return lhs, match.group(0), terms


def _split_plus(text: str) -> list[str]:
    """Split on `+` outside parentheses (modifiers like start(0.5) keep their insides)."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "+" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


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
        kept, short = _prune_once(statements(syntax), drop, lost_paths)
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


def _prune_once(parts: list[str], drop: set[str], lost_paths: list[dict]):
    kept: list[str] = []
    short: dict[str, list[str]] = {}
    for statement in parts:
        split = split_statement(statement)
        if split is None:
            kept.append(statement)
            continue
        lhs, op, terms = split
        if op in (":=", "==", "<", ">"):
            kept.append(statement)
            continue
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
            kept.append(f"{lhs} {op} {' + '.join(left)}")
    if short:  # redo with the short factors gone; their paths are reported on that pass
        lost_paths.clear()
    return kept, short


def _is_intercept(terms: list[str]) -> bool:
    return len(terms) == 1 and term_variable(terms[0]) in {"1", "0"}


def _lost(lhs: str, op: str, term: str, reason: str) -> dict:
    return {"lhs": lhs, "op": op, "rhs": term_variable(term), "reason": reason}
