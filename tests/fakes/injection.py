"""R code smuggled into lavaan model syntax: every family of payload in every position where
lavaan 0.6-14 evaluates R. Each payload tries to create a canary file; plain lavaan runs most of
them (tests/test_sem_grammar.py proves which), vaar must refuse all before R starts.

Paths inside a payload are built from numbers (rawToChar(as.raw(c(...)))), because lavaan
strips quotes from `:=` and constraints: that is what makes the attack work there."""

from __future__ import annotations

from pathlib import Path


def raw(text: str) -> str:
    """An R expression giving `text` with no quote in it."""
    return "rawToChar(as.raw(c(" + ",".join(str(b) for b in text.encode()) + ")))"


def _eval_parse(path: str) -> str:
    return f"eval(parse(text={raw(f'file.create({path!r})')}))"


# family -> payload maker (canary path -> an R expression that creates that file)
FAMILIES = {
    "call": lambda p: f"file.create({raw(p)})",
    "system": lambda p: f"system({raw('touch ' + p)})",
    "eval-parse": _eval_parse,
    "do.call-get": lambda p: f"do.call(get({raw('file.create')}),list({raw(p)}))",
    "namespace ::": lambda p: f"base::file.create({raw(p)})",
    "namespace :::": lambda p: f"base:::file.create({raw(p)})",
    "backticks": lambda p: f"`file.create`({raw(p)})",
    "dollar": lambda p: f"baseenv()$file.create({raw(p)})",
    "at": lambda p: f"methods::new({raw('function')},file.create)@.Data({raw(p)})",
    "brackets": lambda p: f"c(file.create)[[1]]({raw(p)})",
    "braces": lambda p: "{file.create(" + raw(p) + ")}",
    "assignment": lambda p: f"(f<-file.create)({raw(p)})",
    "function": lambda p: f"(function(p)file.create(p))({raw(p)})",
    "lambda": lambda p: "(\\(p)file.create(p))(" + raw(p) + ")",
    "if": lambda p: f"if(file.create({raw(p)}))1",
    "pipe": lambda p: f"{raw(p)}|>file.create()",
    "percent operator": lambda p: f"{raw(p)}%in%file.create({raw(p)})",
    "quoted path": lambda p: f'file.create("{p}")',
    "single quotes": lambda p: f"file.create('{p}')",
    "escaped string": lambda p: 'file.create("' + "".join(f"\\x{b:02x}" for b in p.encode()) + '")',
    "whitespace glue": lambda p: f"file. create({raw(p)})",  # lavaan removes spaces
    "intToUtf8": lambda p: f"file.create(intToUtf8(c({','.join(str(ord(c)) for c in p)})))",
    "hex numbers": lambda p: (
        f"file.create(rawToChar(as.raw(c({','.join(hex(b) for b in p.encode())}))))"
    ),
    "unicode lookalike": lambda p: f"file\u2024create({raw(p)})",  # one dot leader, not '.'
    "dot name": lambda p: f".Internal(file.create({raw(p)}))",
}

# position -> (template with {P}, the line the payload is on). Every place lavaan evaluates:
# right-hand modifiers of each operator, modifier arguments, left-hand modifiers, := and the
# constraints, an allowed function's argument, a continued line, a statement after `;`.
POSITIONS = {
    "=~ modifier": ("visual =~ x1 + {P}*x2 + x3", 1),
    "~ modifier": ("visual =~ x1 + x2 + x3\nx4 ~ {P}*x5", 2),
    "~~ modifier": ("visual =~ x1 + x2 + x3\nx1 ~~ {P}*x2", 2),
    "intercept modifier": ("visual =~ x1 + x2 + x3\nx1 ~ {P}*1", 2),
    "threshold modifier": ("visual =~ x1 + x2 + x3\nx1 | {P}*t1", 2),
    "~*~ modifier": ("visual =~ x1 + x2 + x3\nx1 ~*~ {P}*x1", 2),
    "<~ modifier": ("visual =~ x1 + x2 + x3\nf <~ {P}*x4 + x5", 2),
    "start()": ("visual =~ x1 + start({P})*x2 + x3", 1),
    "c()": ("visual =~ x1 + c({P}, 1)*x2 + x3", 1),
    "start(c())": ("visual =~ x1 + start(c(1, {P}))*x2 + x3", 1),
    "label()": ("visual =~ x1 + label({P})*x2 + x3", 1),
    "equal()": ("visual =~ x1 + x2 + x3\nx2 ~ equal({P})*1", 2),
    "lower()": ("visual =~ x1 + lower({P})*x2 + x3", 1),
    "upper()": ("visual =~ x1 + upper({P})*x2 + x3", 1),
    "left-hand modifier": ("{P}*visual =~ x1 + x2 + x3", 1),
    "efa()": ("efa({P})*visual =~ x1 + x2 + x3", 1),
    ":= right-hand side": ("visual =~ x1 + a*x2 + b*x3\np := a*{P}", 2),
    "== left": ("visual =~ x1 + a*x2 + b*x3\n{P} == a", 2),
    "== right": ("visual =~ x1 + a*x2 + b*x3\na == {P}", 2),
    "< left": ("visual =~ x1 + a*x2 + b*x3\n{P} < a", 2),
    "< right": ("visual =~ x1 + a*x2 + b*x3\na < {P}", 2),
    "> left": ("visual =~ x1 + a*x2 + b*x3\n{P} > a", 2),
    "> right": ("visual =~ x1 + a*x2 + b*x3\na > {P}", 2),
    "function argument": ("visual =~ x1 + a*x2 + b*x3\np := sqrt({P})", 2),
    "continued line": ("visual =~ x1 + x2\n  + {P}*x3", 2),
    "after ;": ("visual =~ x1 + a*x2 + b*x3; p := a*{P}", 1),
}


def canary(directory: Path, family: str, position: str) -> Path:
    slug = "".join(c if c.isalnum() else "_" for c in f"{family}-{position}")
    return Path(directory) / f"canary_{slug}"


def hostile_models(directory: Path) -> dict[tuple[str, str], tuple[str, int, Path]]:
    """(family, position) -> (model text, payload line, canary path it would create)."""
    out = {}
    for family, payload in FAMILIES.items():
        for position, (template, line) in POSITIONS.items():
            path = canary(directory, family, position)
            out[family, position] = (template.replace("{P}", payload(str(path))), line, path)
    return out
