"""The vaar model syntax, model editing and the degenerate-group checks (pure Python, no R)."""

from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pytest

from vaar.errors import VaarError
from vaar.sem.degenerate import clean
from vaar.sem.grammar import check_model
from vaar.sem.model import StructuralPath, build_vaar_model
from vaar.sem.syntax import drop_variables, statements


def item(id_, factor, reverse=False):
    return NS(id=id_, factor=factor, reverse=reverse)


def instrument(id_, role, items):
    return NS(id=id_, role=role, items=items)


PRIVACY = instrument(
    "iuipc10",
    "privacy",
    [item("c1", "IUIPC_CTRL", True), item("c2", "IUIPC_CTRL"), item("a1", "IUIPC_AWA"),
     item("a2", "IUIPC_AWA")],
)  # fmt: skip
PSA = instrument("psa", "prosocial", [item("p1", "PSA"), item("p2", "PSA"), item("p3", "PSA")])
AODS = instrument("aods", "sharing", [item("s1", "AoDS", True), item("s2", "AoDS")])


def test_vaar_model_one_factor_per_instrument_with_a_positive_marker():
    model = build_vaar_model([PRIVACY, PSA, AODS])
    assert model.syntax.splitlines() == [
        "IUIPC =~ c2 + c1 + a1 + a2",  # c1 is reverse-keyed: c2 becomes the marker
        "PSA =~ p1 + p2 + p3",
        "AoDS =~ s2 + s1",
        "AoDS ~ IUIPC + PSA",
    ]
    assert model.paths == [
        StructuralPath("AoDS", "IUIPC", "privacy"),
        StructuralPath("AoDS", "PSA", "prosocial"),
    ]
    assert tuple(model.paths[0]) == ("AoDS", "IUIPC", "privacy")
    assert sorted(model.items) == sorted(["c1", "c2", "a1", "a2", "p1", "p2", "p3", "s1", "s2"])


def test_vaar_model_privacy_subscales_as_separate_factors():
    model = build_vaar_model([PRIVACY, PSA, AODS], privacy="subscales")
    assert "IUIPC_CTRL =~ c2 + c1" in model.syntax
    assert "IUIPC_AWA =~ a1 + a2" in model.syntax
    assert "AoDS ~ IUIPC_CTRL + IUIPC_AWA + PSA" in model.syntax
    assert [p.role for p in model.paths] == ["privacy", "privacy", "prosocial"]


def test_vaar_model_from_the_real_instruments():
    from vaar.instruments import load_instrument

    insts = [load_instrument(i) for i in ("iuipc10", "psa", "aods")]
    model = build_vaar_model(insts)
    first = {line.split(" =~ ")[0]: line.split(" =~ ")[1].split(" + ")[0]
             for line in model.syntax.splitlines() if "=~" in line}  # fmt: skip
    assert set(first) == {"IUIPC", "PSA", "AoDS"}
    keyed = {i.id: i.reverse for inst in insts for i in inst.items}
    assert not any(keyed[marker] for marker in first.values())


@pytest.mark.parametrize(
    ("instruments", "privacy", "message"),
    [
        ([PRIVACY, PSA], "instrument", "exactly one sharing instrument"),
        ([PRIVACY, PSA, AODS], "items", "privacy must be"),
        ([instrument("x", "other", [])], "instrument", "unknown role 'other'"),
        ([PRIVACY, AODS, instrument("p", "prosocial", [item("q", "Q")])], "instrument",
         "factor Q has 1 item"),
    ],
)  # fmt: skip
def test_vaar_model_errors(instruments, privacy, message):
    with pytest.raises(VaarError, match=message):
        build_vaar_model(instruments, privacy=privacy)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("f =~ a + b +\n  c  # note\n+ d; g =~ e + f2\n! comment\ny ~ f",
         ["f =~ a + b + c + d", "g =~ e + f2", "y ~ f"]),
        # lavaan: a line without an operator continues the statement, whatever ends the last
        ("p := a*b -\n  c\nq := a /\n b", ["p := a*b - c", "q := a/b"]),
        ("y ~ x1\n  x2 ~~ x3", ["y ~ x1", "x2 ~~ x3"]),
        ("f =~ 0.5*\nx1 + start(0.4)*\n x2", ["f =~ 0.5*x1 + start(0.4)*x2"]),
        ('efa("b")*f1 +\nefa("b")*f2 =~ x1 + x2', ['efa("b")*f1 + efa("b")*f2 =~ x1 + x2']),
        ("a > 0.1\n+ 0.2\nb < 1", ["a > 0.1 + 0.2", "b < 1"]),
    ],
)  # fmt: skip
def test_statements_are_lavaans_and_the_allow_lists(text, expected):
    """One reading of a model: the statements of syntax.py are the allow-list's."""
    assert statements(text) == expected
    assert check_model(text).splitlines() == expected


def test_terms_split_on_plus_between_terms_only():
    syntax = "f =~ x1 + -0.5*x2 + start(c(0.1, +0.2))*x3 + 2^+1*x4 + c(a, b)*x5\n"
    pruned = drop_variables(syntax, {"x5"})
    assert pruned.syntax == "f =~ x1 + -0.5*x2 + start(c(0.1, +0.2))*x3 + 2^+1*x4\n"
    assert check_model(pruned.syntax) == pruned.syntax


def test_dropping_items_drops_short_factors_and_their_paths():
    syntax = "A =~ a1 + 0.5*a2 + a3\nB =~ b1 + b2\nC =~ c1 + c2\nC ~ A + B\na1 ~~ a2\n"
    pruned = drop_variables(syntax, {"a2", "b2"})
    assert pruned.syntax.splitlines() == ["A =~ a1 + a3", "C =~ c1 + c2", "C ~ A"]
    assert pruned.dropped_factors[0]["factor"] == "B"
    assert pruned.dropped_factors[0]["items"] == ["b1"]
    assert pruned.not_estimable_paths == [
        {"lhs": "C", "op": "~", "rhs": "B", "reason": "its predictor was dropped"}
    ]


def groups(values: dict[str, dict[str, list]]) -> pd.DataFrame:
    frames = [pd.DataFrame({"g": name, **cols}) for name, cols in values.items()]
    return pd.concat(frames, ignore_index=True).astype({c: float for c in ("x", "y", "z")})


def test_zero_variance_item_is_dropped_in_every_group():
    data = groups({"m1": {"x": [1, 2, 3, 4], "y": [2, 2, 2, 2], "z": [1, 3, 2, 4]},
                   "m2": {"x": [2, 3, 1, 4], "y": [1, 2, 3, 4], "z": [4, 3, 2, 1]}})  # fmt: skip
    out = clean(data, "g", ["x", "y", "z"], ordered=False, strategy="drop_items")
    assert out.items == ["x", "z"]
    why = "group m1: zero variance (every answer is 2)"
    assert out.dropped_items == [{"item": "y", "reason": why}]
    assert out.excluded_groups == []
    assert len(out.data) == 8


def test_exclude_group_and_fail_strategies():
    data = groups({"m1": {"x": [1, 2, 3, 4], "y": [2, 2, 2, 2], "z": [1, 3, 2, 4]},
                   "m2": {"x": [2, 3, 1, 4], "y": [1, 2, 3, 4], "z": [4, 1, 3, 2]}})  # fmt: skip
    out = clean(data, "g", ["x", "y", "z"], ordered=False, strategy="exclude_group")
    assert out.items == ["x", "y", "z"]
    why = "item y: zero variance (every answer is 2)"
    assert out.excluded_groups == [{"group": "m1", "reason": why}]
    assert set(out.data["g"]) == {"m2"}
    with pytest.raises(VaarError, match="item y in group m1: zero variance"):
        clean(data, "g", ["x", "y", "z"], ordered=False, strategy="fail")
    with pytest.raises(VaarError, match="degenerate must be one of"):
        clean(data, "g", ["x"], ordered=False, strategy="jitter")


def test_small_or_empty_groups_are_excluded_and_empty_categories_dropped():
    data = groups({"m1": {"x": [1, 2, 3, 4], "y": [1, 2, 3, 4], "z": [1, 2, 3, 4]},
                   "m2": {"x": [1, 2], "y": [2, 1], "z": [1, 2]},
                   "m3": {"x": [np.nan] * 4, "y": [np.nan] * 4, "z": [np.nan] * 4},
                   "m4": {"x": [1, 2, 1, 2], "y": [4, 3, 2, 1], "z": [2, 1, 2, 3]}})  # fmt: skip
    out = clean(data, "g", ["x", "y", "z"], ordered=True, strategy="drop_items")
    assert out.excluded_groups == [
        {"group": "m2", "reason": "2 sessions for 3 items (more sessions than items are needed)"},
        {"group": "m3", "reason": "every answer is missing"},
    ]
    assert [d["item"] for d in out.dropped_items] == ["x", "z"]
    assert "empty ordinal categories 3, 4" in out.dropped_items[0]["reason"]


def test_no_group_left_is_an_error():
    data = groups({"m1": {"x": [1.0], "y": [2.0], "z": [3.0]}})
    with pytest.raises(VaarError, match="no group is left to fit .*: group m1: 1 sessions"):
        clean(data, "g", ["x", "y", "z"], ordered=False, strategy="drop_items")


VARIED = {"x": [1, 2, 3, 4, 5], "y": [2, 1, 4, 3, 5], "z": [5, 3, 1, 2, 4]}
FIVES = "answered 5 to every item: no value–action variation to estimate"


@pytest.mark.parametrize("strategy", ["drop_items", "exclude_group"])
@pytest.mark.parametrize(
    "constant, reason",
    [
        ({"x": [5.0] * 5, "y": [5.0] * 5, "z": [5.0] * 5}, FIVES),
        ({"x": [5, np.nan, 5, 5, 5], "y": [5.0] * 5, "z": [np.nan, 5, 5, 5, 5]}, FIVES),
        (
            {"x": [3.0] * 5, "y": [5.0] * 5, "z": [1.0] * 5},
            "gave the same answer to each item in every session: no value–action variation "
            "to estimate",
        ),
        (
            {"x": [4.0] * 5, "y": [np.nan] * 5, "z": [4.0] * 5},
            FIVES.replace("5 to every item", "4 to every item it answered"),
        ),
    ],
)
def test_a_constant_group_is_excluded_and_the_others_keep_every_item(strategy, constant, reason):
    """One model answering a constant must not sink the study: under drop_items its zero
    variance would otherwise drop every item from every group."""
    data = groups({"m1": VARIED, "const": constant, "m2": {k: v[::-1] for k, v in VARIED.items()}})
    out = clean(data, "g", ["x", "y", "z"], ordered=False, strategy=strategy)
    assert out.excluded_groups == [{"group": "const", "reason": reason}]
    assert out.items == ["x", "y", "z"] and out.dropped_items == []
    assert sorted(set(out.data["g"])) == ["m1", "m2"]
    with pytest.raises(VaarError, match=f"degenerate='fail'\\): group const: {reason[:20]}"):
        clean(data, "g", ["x", "y", "z"], ordered=False, strategy="fail")


def test_a_group_constant_on_some_items_keeps_the_item_strategies():
    partly = {"x": [5.0] * 5, "y": [5.0] * 5, "z": [1, 2, 3, 4, 5]}
    data = groups({"m1": VARIED, "m2": partly})
    out = clean(data, "g", ["x", "y", "z"], ordered=False, strategy="drop_items")
    assert out.items == ["z"] and out.excluded_groups == []
    out = clean(data, "g", ["x", "y", "z"], ordered=False, strategy="exclude_group")
    assert out.excluded_groups == [
        {"group": "m2", "reason": "item x: zero variance (every answer is 5)"}
    ]


def test_every_group_constant_is_one_clear_error():
    data = groups({"a": {k: [5.0] * 5 for k in "xyz"}, "b": {k: [1.0] * 5 for k in "xyz"}})
    with pytest.raises(VaarError) as caught:
        clean(data, "g", ["x", "y", "z"], ordered=False, strategy="drop_items")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("no group is left to fit")
    assert "group a: answered 5 to every item" in message
    assert "group b: answered 1 to every item" in message


def test_usable_sessions_follow_the_missing_data_method():
    """Listwise deletion fits complete sessions only: 3 of 5 for 3 items is too few."""
    holes = {"x": [1, 2, np.nan, 4, 5], "y": [2, 1, 4, np.nan, 5], "z": [5, 3, 1, 2, 4]}
    data = groups({"m1": VARIED, "m2": holes})
    assert clean(data, "g", ["x", "y", "z"], ordered=False, strategy="fail").excluded_groups == []
    out = clean(
        data, "g", ["x", "y", "z"], ordered=False, strategy="drop_items", missing="listwise"
    )
    why = "3 complete sessions for 3 items (more sessions than items are needed)"
    assert out.excluded_groups == [{"group": "m2", "reason": why}]
    empty_rows = {k: v + [np.nan] * 3 for k, v in VARIED.items()}
    data = groups({"m1": VARIED, "m2": {k: v[:3] + [np.nan] * 5 for k, v in empty_rows.items()}})
    out = clean(data, "g", ["x", "y", "z"], ordered=False, strategy="drop_items")
    assert out.excluded_groups[0]["reason"].startswith("3 sessions for 3 items")


def test_r_cpus_follows_the_environment(monkeypatch):
    """The service gives each R worker a share of the cores through VAAR_R_CPUS."""
    from vaar.sem.ladder import r_cpus

    monkeypatch.delenv("VAAR_R_CPUS", raising=False)
    assert r_cpus() >= 1
    monkeypatch.setenv("VAAR_R_CPUS", "1")
    assert r_cpus() == 1
    monkeypatch.setenv("VAAR_R_CPUS", "two")
    with pytest.raises(VaarError, match="VAAR_R_CPUS must be a whole number"):
        r_cpus()


def test_a_group_with_repeated_answer_patterns_is_excluded_once_items_are_settled():
    """Four of six sessions identical: a singular covariance matrix that lavaan refuses ("not
    positive-definite"). Continuous data only; a zero-variance item is dropped first."""
    repeats = {"x": [1, 1, 1, 1, 2, 5], "y": [2, 2, 2, 2, 3, 1], "z": [1, 1, 1, 1, 1, 2]}
    varied = {k: v + [3] for k, v in VARIED.items()}
    data = groups({"m1": varied, "rep": repeats})
    out = clean(data, "g", ["x", "y", "z"], ordered=False, strategy="drop_items")
    why = (
        "its 6 sessions give 3 distinct answer patterns, spanning 2 of 3 dimensions: the sample "
        "covariance matrix is singular (answers repeat or move together)"
    )
    assert out.excluded_groups == [{"group": "rep", "reason": why}]
    assert out.items == ["x", "y", "z"]
    assert (
        clean(data, "g", ["x", "y", "z"], ordered=True, strategy="drop_items").excluded_groups == []
    )
    with pytest.raises(VaarError, match="group rep: its 6 sessions"):
        clean(data, "g", ["x", "y", "z"], ordered=False, strategy="fail")
    both = groups({"rep1": repeats, "rep2": repeats})  # every group: the items, not a group
    assert clean(both, "g", ["x", "y", "z"], ordered=False, strategy="fail").excluded_groups == []
    flat = groups({"m1": varied, "rep": {**repeats, "z": [4] * 6}})  # z: an item problem first
    out = clean(flat, "g", ["x", "y", "z"], ordered=False, strategy="drop_items")
    assert out.items == ["x", "y"] and [d["item"] for d in out.dropped_items] == ["z"]
