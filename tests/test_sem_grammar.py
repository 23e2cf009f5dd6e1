"""The lavaan model-syntax allow-list (vaar.sem.grammar): lavaan's documented models pass and
mean the same to lavaan after the check; R code in any position lavaan evaluates is refused in
Python, with the line and the token, before any R starts. The hostile payloads are shown to be
real: plain lavaan runs them and creates their canary files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
from fakes.injection import FAMILIES, POSITIONS, hostile_models, raw

from vaar.sem.grammar import (
    CONSTRAINT_OPERATORS,
    FORMULA_OPERATORS,
    FUNCTIONS,
    LHS_MODIFIERS,
    MAX_DEPTH,
    MODIFIERS,
    RESERVED,
    ModelSyntaxError,
    check_model,
)

needs_r = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")

# lavaan's tutorial and ?model.syntax models, and vaar's own forms.
LEGITIMATE = {
    "HolzingerSwineford CFA": """
visual  =~ x1 + x2 + x3
textual =~ x4 + x5 + x6
speed   =~ x7 + x8 + x9
""",
    "PoliticalDemocracy SEM": """
  # measurement model
    ind60 =~ x1 + x2 + x3
    dem60 =~ y1 + a*y2 + b*y3 + c*y4
    dem65 =~ y5 + a*y6 + b*y7 + c*y8
  # regressions
    dem60 ~ ind60
    dem65 ~ ind60 + dem60
  # residual correlations
    y1 ~~ y5
    y2 ~~ y4 + y6
    y3 ~~ y7
    y4 ~~ y8
    y6 ~~ y8
""",
    "growth": """
i =~ 1*t1 + 1*t2 + 1*t3 + 1*t4
s =~ 0*t1 + 1*t2 + 2*t3 + 3*t4
i ~ x1 + x2
s ~ x1 + x2
t1 ~ c1
""",
    "mediation": """
# direct effect
Y ~ c*X
# mediator
M ~ a*X
Y ~ b*M
# indirect effect (a*b)
ab := a*b
# total effect
total := c + (a*b)
""",
    "constraints": """
y1 ~ b1*x1 + b2*x2 + b3*x3
b1 == (b2 + b3)^2
b1 > exp(b2 + b3)
b2 < -0.5
b3 > -1e-3
""",
    "defined functions": """
f =~ x1 + a*x2 + b*x3
g := sqrt(a^2 + b^2)
h := exp(-a)/(1 + exp(-a))
k := log10(abs(a)) - log(2)*pnorm(b)
a == b
""",
    "equality by labels": """
visual  =~ x1 + v2*x2 + v2*x3
textual =~ x4 + x5 + x6
""",
    "start values and free loadings": """
visual =~ NA*x1 + start(0.8)*x2 + start(1.2)*x3
visual ~~ 1*visual
""",
    "thresholds and intercepts": """
f =~ x1 + x2 + x3
x1 | t1 + t2 + t3
x2 | th1*t1 + c(a, b)*t2 + 0.5*t3
x3 ~ 1
x2 ~ int2*1
f ~ 0*1
""",
    "multi-group modifiers": """
visual  =~ x1 + 0.5*x2 + c(0.6, 0.8)*x3
textual =~ x4 + start(c(1.2, 0.6))*x5 + x6
speed   =~ x7 + x8 + c(x9.group1, x9.group2)*x9
x1 ~~ c(NA, 1)*x1
""",
    "quoted labels and equal()": """
f1 =~ 1*y1a + 1*y1b + 1*y1c + label("lab")*x1 + "lab2"*x2 + c("g1", NA)*x3
y1a ~ 1
y1b ~ equal("y1a~1")*1
y1c ~ equal("y1a~1")*1
x2 ~~ equal("f1=~x1")*x3
""",
    "bounds and numeric modifiers": """
f =~ x1 + lower(0)*x2 + upper(10)*x3 + lower(-Inf)*x4 + sqrt(10)*x5 + 1/3*x6 + -1*x7
""",
    "?model.syntax example": """
  # 1. latent variable definitions
    f1 =~ y1 + y2 + y3
    f2 =~ y4 + y5 + y6
    f3 =~ y7 + y8 +
          y9 + y10
    f4 =~ y11 + y12 + y13

  ! this is also a comment

  # 2. regressions
    f1 ~ f3 + f4
    f2 ~ f4
    y1 + y2 ~ x1 + x2 + x3

  # 3. (co)variances
    y1 ~~ y1
    y2 ~~ y4 + y5
    f1 ~~ f2

  # 4. intercepts
    f1 ~ 1; y5 ~ 1

  # 5. thresholds
    y11 | t1 + t2 + t3
    y12 | t1
    y13 | t1 + t2

  # 6. scaling factors
    y11 ~*~ y11
    y12 ~*~ y12
    y13 ~*~ y13

  # 7. formative factors
    f5 <~ z1 + z2 + z3 + z4
""",
    "continued lines and ;": """
visual =~ x1 +
          x2
        + x3 ; textual =~ x4 + x5 + x6   # two statements on one line
speed =~ x7 + x8 + x9 ! the end
""",
    "efa blocks": """
efa("efa")*f1 +
efa("efa")*f2 =~ x1 + x2 + x3 + x4 + x5 + x6
""",
    "names with dots and underscores": """
F.one =~ item_1 + item.2 + .hidden + x1.group1
""",
}


def vaar_models() -> dict[str, str]:
    from vaar.instruments import list_instruments
    from vaar.sem import build_vaar_model

    by_role = {}
    for inst in list_instruments():
        by_role.setdefault(inst.role, inst)
    chosen = [by_role["privacy"], by_role["prosocial"], by_role["sharing"]]
    return {f"vaar {p}": build_vaar_model(chosen, privacy=p).syntax
            for p in ("instrument", "subscales")}  # fmt: skip


def refused(model: str) -> str:
    with pytest.raises(ModelSyntaxError) as info:
        check_model(model)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# legitimate models ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LEGITIMATE))
def test_lavaans_documented_models_pass(name):
    checked = check_model(LEGITIMATE[name])
    assert check_model(checked) == checked  # the checked text is a fixed point
    assert "#" not in checked and "!" not in checked and ";" not in checked


def test_vaars_own_models_pass_unchanged():
    for name, syntax in vaar_models().items():
        assert check_model(syntax) == syntax, name


def test_the_legitimate_models_use_every_operator_modifier_and_function():
    text = "\n".join(LEGITIMATE.values())
    for op in (*FORMULA_OPERATORS, ":=", *CONSTRAINT_OPERATORS):
        assert f" {op} " in "\n".join(check_model(m) for m in LEGITIMATE.values()), op
    for name in (*MODIFIERS, *LHS_MODIFIERS, *FUNCTIONS):
        assert f"{name}(" in text, name
    assert "NA*" in text and "Inf" in text


def test_windows_line_ends_tabs_and_the_small_tilde():
    assert check_model("visual\t=~ x1 +\r\n\tx2 + x3\r\n") == "visual =~ x1 + x2 + x3\n"
    assert check_model("visual =\u02dc x1 + x2") == "visual =~ x1 + x2\n"


@needs_r
def test_the_checked_text_means_the_same_to_lavaan(tmp_path):
    """lavaan's own parse (the parameter table, modifiers and constraints) of each original
    and of its checked text is identical."""
    models = {**LEGITIMATE, **vaar_models()}
    for i, text in enumerate(models.values()):
        (tmp_path / f"{i}.orig").write_text(text)
        (tmp_path / f"{i}.checked").write_text(check_model(text))
    script = r"""
    suppressPackageStartupMessages(library(lavaan))
    read <- function(f) readChar(f, file.info(f)$size, useBytes = TRUE)
    a <- commandArgs(TRUE)
    for (i in seq_len(as.integer(a[2])) - 1) {
      one <- function(ext) lavParseModelString(read(file.path(a[1], paste0(i, ext))))
      cat(i, identical(one(".orig"), one(".checked")), "\n")
    }
    """
    done = subprocess.run(["Rscript", "-e", script, str(tmp_path), str(len(models))],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    same = dict(line.split() for line in done.stdout.splitlines())
    names = list(models)
    assert {names[int(i)]: v for i, v in same.items()} == dict.fromkeys(names, "TRUE")


# hostile models ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_injection_family_is_refused_in_every_position(family, tmp_path):
    for (fam, position), (model, line, canary) in hostile_models(tmp_path).items():
        if fam != family:
            continue
        message = refused(model)
        assert f", line {line}: " in message, (position, message)
        assert "'" in message, (position, message)  # it quotes the offending token
        assert not canary.exists()
    assert list(tmp_path.iterdir()) == []


@needs_r
def test_plain_lavaan_runs_the_payloads_that_vaar_refuses(tmp_path):
    """The positive control: the same texts, given to plain lavaan (sem(), up to the fit),
    create their canary files. Every position is live with a plain call, and the families R
    accepts are live in a modifier, in := or in a constraint."""
    hostile = hostile_models(tmp_path)
    control = [k for k in hostile if k[0] == "call"]
    control += [k for k in hostile if k[1] in ("=~ modifier", ":= right-hand side", "== right")]
    for i, key in enumerate(control):
        (tmp_path / f"{i}.lav").write_text(hostile[key][0])
    script = r"""
    suppressPackageStartupMessages(library(lavaan))
    d <- HolzingerSwineford1939
    a <- commandArgs(TRUE)
    for (i in seq_len(as.integer(a[2])) - 1) {
      f <- file.path(a[1], paste0(i, ".lav"))
      m <- readChar(f, file.info(f)$size, useBytes = TRUE)
      invisible(try(suppressWarnings(sem(m, d, group = "school", do.fit = FALSE)),
                    silent = TRUE))
    }
    """
    subprocess.run(["Rscript", "-e", script, str(tmp_path), str(len(control))],
                   capture_output=True, timeout=300, check=True)  # fmt: skip
    live = {key for key in control if hostile[key][2].exists()}
    assert {p for f, p in live if f == "call"} == set(POSITIONS)
    # R itself rejects these few (a character R does not read, an unknown .Internal, a
    # string R does not unescape the way lavaan needs); vaar refuses them all the same
    not_live = {f for f in FAMILIES if not any(k[0] == f for k in live)}
    assert not_live <= {"unicode lookalike", "dot name", "escaped string", "single quotes"}
    assert len(FAMILIES) - len(not_live) >= 20
    for key in control:  # and vaar refuses every one of them
        refused(hostile[key][0])


def test_refused_before_r_starts(tmp_path):
    """fit_ladder, parse_model and the bridge refuse a hostile model in a fresh interpreter
    without ever importing rpy2, and no canary appears."""
    hostile = hostile_models(tmp_path)
    models = [hostile[k][0] for k in hostile if k[1] in ("=~ modifier", ":= right-hand side")]
    (tmp_path / "models.txt").write_text("\0".join(models))
    code = f"""
import sys
import pandas as pd
from vaar.sem import fit_ladder, parse_model, bridge
from vaar.sem.grammar import ModelSyntaxError
data = pd.DataFrame({{"g": ["a", "b"] * 5, **{{f"x{{i}}": range(10) for i in range(1, 10)}}}})
models = open({str(tmp_path / "models.txt")!r}).read().split("\\0")
for model in models:
    for call in (lambda: fit_ladder(data, model, "g"), lambda: parse_model(model),
                 lambda: bridge.call("vaar_parse", model),
                 lambda: bridge.call("vaar_fit_ladder", data, model, "g")):
        try:
            call()
        except ModelSyntaxError:
            pass
        else:
            sys.exit("accepted: " + model)
assert "rpy2" not in sys.modules, "R was started"
print(len(models))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) == len(models) > 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models.txt"]


# messages ------------------------------------------------------------------------------------
MESSAGES = {
    "visual =~ x1 + x2\n\n# comment\np := a*system(1)": "line 4: function 'system()' is not "
    "allowed (allowed: abs(), sqrt(), exp(), log(), log10(), pnorm())",
    "visual =~ x1 +\n  x2 + $x3": "line 2: the character '$' is not allowed",
    "visual =~ x1; x2 ~ 2": "line 1: a number term must be 0 or 1",
    "visual =~ x1 + x2\nx3": "line 2: expected '*' between a modifier and its variable, found 'x3'",
    "visual =~ x1 + start(a)*x2": "line 1: expected a number, found 'a'",
    "visual =~ x1 + c(a, 1)*x2": "line 1: c() mixes numbers and labels",
    "visual =~ x1 + label(1)*x2": "line 1: label() takes labels, not '1'",
    "visual =~ x1 + foo(1)*x2": "line 1: modifier 'foo()' is not allowed (allowed: c(), start(),",
    "foo(1)*visual =~ x1": "line 1: modifier 'foo()' is not allowed left of '=~'",
    'visual =~ x1 + label("a b")*x2': "line 1: '\"a b\"' is not a label",
    "visual =~ x1 + x2 ~ x3": "line 1: more than one operator in one statement ('=~' and '~')",
    "visual =~~ x1": "line 1: more than one operator in one statement ('=~' and '~')",
    "x1 x2": "line 1: no lavaan operator",
    "visual =~ x1\n := a": "line 2: nothing on the left of ':='",
    "visual =~ x1\np :=": "line 2: nothing on the right of ':='",
    "visual =~ x1 + function*x2": "line 1: 'function' is an R reserved word, not a label name",
    "visual =~ x1 + NULL": "line 1: 'NULL' is an R reserved word, not a variable name",
    "visual =~ x1 + x2:x3": "line 1: the character ':' is not allowed",
    "group: 1\nvisual =~ x1": "line 1: the character ':' is not allowed",
    "visual =~ x1 + 0.5?x2": "line 1: the character '?' is not allowed",
    'visual =~ x1 + "a*x2': "line 1: a quote that is not closed is not allowed",
    "p := sqrt(a, b)": "line 1: expected ')' to close the parenthesis, found ','",
    "p := a b": "line 1: unexpected 'b' in an expression",
    "a = b": "line 1: the character '=' is not allowed",
    "": "the model is empty",
    "# only\n! comments\n": "the model has only comments",
}


@pytest.mark.parametrize("model", list(MESSAGES))
def test_errors_name_the_line_and_the_token(model):
    assert MESSAGES[model] in refused(model)


def test_the_source_names_where_the_model_came_from():
    with pytest.raises(ModelSyntaxError, match=r"^--model m\.lav, line 1: "):
        check_model("f =~ system(1)*x1", source="--model m.lav")
    with pytest.raises(ModelSyntaxError, match=r"^invalid lavaan model syntax, line 1: "):
        check_model("f =~ system(1)*x1")


def test_reserved_words_are_no_names():
    for word in sorted(RESERVED - {"NA", "Inf"}):
        refused(f"f =~ x1 + {word}")
        refused(f"f =~ x1 + {word}*x2")
        refused(f"{word} =~ x1")


def test_comment_and_separator_tricks_never_reach_r(tmp_path):
    """What lavaan might read differently (a comment on the last line without a newline,
    text after `!`, `;` inside a comment) is dropped: R gets only the checked statements."""
    payload = f"file.create({raw(str(tmp_path / 'x'))})"
    for model in (
        f"f =~ x1 + a*x2\np := a ! {payload}",
        f"f =~ x1 + a*x2\np := a # ; q := {payload}",
        f"f =~ x1 + a*x2 !\n# {payload}",
    ):
        checked = check_model(model)
        assert "file.create" not in checked and checked.startswith("f =~ x1 + a*x2\n")
    refused(f"f =~ x1 + a*x2\np := a; {payload}")  # `;` outside a comment: checked
    refused(f"f =~ x1 + a*x2\np := a\n {payload}")  # a continued line: checked


def test_deep_nesting_is_refused_cleanly_and_large_models_are_fast():
    for model in (
        "p := " + "(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1),
        "p := a" + "^a" * 5000,
        "p := " + "sqrt(" * 500 + "a" + ")" * 500,
        "f =~ " + "c(" * 500 + "1" + ")" * 500 + "*x1",
    ):
        assert f"more than {MAX_DEPTH} nested" in refused(model) or "c(" in refused(model)
    assert "function 'start()' is not allowed" in refused("f =~ start(start(1))*x1")
    assert check_model("p := " + "(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH)
    big = "\n".join(f"f{i} =~ x{i}a + c(l{i}, NA)*x{i}b + start(0.5)*x{i}c" for i in range(4000))
    started = time.perf_counter()
    assert check_model(big).count("\n") == 4000
    assert time.perf_counter() - started < 2.0  # 256 KiB, the service's text limit, ~ 5000 lines
