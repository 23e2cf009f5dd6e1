"""`--ordered` from the command line: option parsing and estimator checks (no R), and the
ordinal ladder of `vaar sem-fit --ordered` against plain semTools measEq.syntax fits (Rscript,
no vaar code) to 1e-6, on simulated ordinal answers of two groups."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from test_sem_ladder import assert_close, rscript

from vaar.cli import main
from vaar.errors import VaarError
from vaar.sem.options import check_estimator, parse_ordered

MODEL = "A =~ a1 + a2 + a3\nB =~ b1 + b2 + b3\n"
ITEMS = ["a1", "a2", "a3", "b1", "b2", "b3"]

# Plain semTools + lavaan: Wu & Estabrook (2016) syntax per level, the listed items ordinal.
PLAIN = r"""
suppressPackageStartupMessages({library(lavaan); library(semTools)})
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1], colClasses = c(llm = "character"))
m <- paste(readLines(a[2]), collapse = "\n")
ov <- strsplit(a[3], ",")[[1]]
eq <- list(configural = "", thresholds = "thresholds", metric = c("thresholds", "loadings"),
           scalar = c("thresholds", "loadings", "intercepts"))
fits <- list(); pes <- list()
for (lv in names(eq)) {
  s <- measEq.syntax(configural.model = m, data = d, group = "llm", ordered = ov,
                     parameterization = "theta", ID.fac = "std.lv",
                     ID.cat = "Wu.Estabrook.2016", group.equal = eq[[lv]])
  f <- lavaan(as.character(s), data = d, group = "llm", ordered = ov, estimator = "WLSMV",
              parameterization = "theta")
  fm <- fitMeasures(f, c("chisq", "df", "chisq.scaled", "cfi.scaled", "rmsea.scaled", "srmr"))
  fits[[lv]] <- data.frame(level = lv, as.list(unclass(fm)))
  pe <- parameterEstimates(f)
  pes[[lv]] <- data.frame(level = lv, group = lavInspect(f, "group.label")[pe$group],
                          lhs = pe$lhs, op = pe$op, rhs = pe$rhs, est = pe$est, se = pe$se)
}
write.csv(do.call(rbind, fits), a[4], row.names = FALSE)
write.csv(do.call(rbind, pes), a[5], row.names = FALSE)
"""


@pytest.mark.parametrize(
    "text, expected",
    [(None, False), ("all", True), (" all ", True), ("a1", ["a1"]), ("a1, b2,a1", ["a1", "b2"]),
     ("x.1,y_2", ["x.1", "y_2"])],
)  # fmt: skip
def test_ordered_option_values(text, expected):
    assert parse_ordered(text) == expected


@pytest.mark.parametrize("text", ["", "a1,,b1", "1abc", "a1;b1", "a1,b-1", "a1 b1"])
def test_ordered_option_refuses_what_is_not_a_name(text):
    with pytest.raises(VaarError, match="--ordered: .* is not a variable name"):
        parse_ordered(text)


@pytest.mark.parametrize(
    "estimator, ordered, message",
    [("WLSMV", False, "WLSMV fits ordinal items: mark them with --ordered all"),
     ("MLR", True, "MLR fits continuous items, but --ordered"),
     ("ML", ["a1"], "ML fits continuous items")],
)  # fmt: skip
def test_estimator_and_ordered_must_agree(estimator, ordered, message):
    with pytest.raises(VaarError, match=message):
        check_estimator(estimator, ordered)
    for fine in ((None, ordered), ("WLSMV", True), ("MLR", False), (None, False)):
        check_estimator(*fine)


def ordinal_answers(seed=5, n=250) -> pd.DataFrame:
    """Two groups answering six 4-point items of two correlated factors (thresholds differ a
    little between groups); every category is used in both groups."""
    rng = np.random.default_rng(seed)
    frames = []
    for name, shift in (("llm-a", 0.0), ("llm-b", 0.3)):
        factors = rng.multivariate_normal([0, shift], [[1, 0.4], [0.4, 1]], size=n)
        cols = {}
        for k, item in enumerate(ITEMS):
            latent = 0.8 * factors[:, k // 3] + rng.standard_normal(n) * 0.6
            cols[item] = np.digitize(latent, [-0.8, 0.0, 0.8]).astype(float) + 1
        frames.append(pd.DataFrame({"llm": name, **cols}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ordered")
    data, model = root / "answers.csv", root / "model.lav"
    ordinal_answers().to_csv(data, index=False)
    model.write_text(MODEL, encoding="utf-8")
    return root, data, model


def sem_fit(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["sem-fit", *map(str, args)])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "extra, fragment",
    [(["--estimator", "WLSMV"], "error: --estimator WLSMV fits ordinal items"),
     (["--ordered", "a1,zz;"], "error: --ordered: 'zz;' is not a variable name"),
     (["--ordered", "all", "--estimator", "MLR"], "error: --estimator MLR fits continuous")],
)  # fmt: skip
def test_sem_fit_refuses_wlsmv_without_ordered_items(files, extra, fragment):
    root, data, model = files
    code, output = sem_fit(data, "--model", model, "--group", "llm", "--out", root / "x", *extra)
    assert code == 2 and output.strip().splitlines() == [output.strip()], output
    assert output.startswith(fragment), output
    assert not (root / "x").exists()


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
@pytest.mark.parametrize("ordered", ["all", "a1,a2,a3,b1,b3"])
def test_sem_fit_ordered_equals_plain_semtools(files, ordered):
    root, data, model = files
    out = root / f"out-{len(ordered)}"
    args = ["--ordered", ordered, "--levels", "metric,scalar", "--no-equal-paths"]
    code, output = sem_fit(data, "--model", model, "--group", "llm", "--out", out, *args)
    assert code == 0, output
    doc = json.loads((out / "sem.json").read_text(encoding="utf-8"))
    assert doc["estimator"] == "WLSMV"
    names = ITEMS if ordered == "all" else ordered.split(",")
    assert doc["call"]["args"]["ordered"] == names
    script = root / "plain.R"
    script.write_text(PLAIN, encoding="utf-8")
    fits_csv, pe_csv = root / f"fits-{len(ordered)}.csv", root / f"pe-{len(ordered)}.csv"
    rscript(script, data, model, ",".join(names), fits_csv, pe_csv)
    plain = pd.read_csv(fits_csv)
    fits = pd.DataFrame(doc["fits"]).set_index("level")
    assert list(fits.index) == list(plain["level"])
    for column in plain.columns[1:]:
        assert_close(fits[column.replace(".", "_")], plain[column], column)
    plain_pe = pd.read_csv(pe_csv, keep_default_na=False, na_values=["NA"])
    est = pd.DataFrame(doc["estimates"])
    est = est[est["op"] != "r2"]
    key = ["level", "group", "lhs", "op", "rhs"]
    merged = est.merge(plain_pe, on=key, suffixes=("", "_plain"), validate="one_to_one")
    assert len(merged) == len(plain_pe) == len(est)
    assert_close(merged["est"], merged["est_plain"], "est")
    assert_close(merged["se"], merged["se_plain"], "se")


def analyze(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["analyze", *map(str, args)])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "extra, fragment",
    [(["--estimator", "WLSMV"], "error: --estimator WLSMV fits ordinal items"),
     (["--ordered", "a1", "--estimator", "ML"], "error: --estimator ML fits continuous"),
     (["--human-group", "llm-a"],
      "only --estimator, --ordered, --degenerate and --information apply")],
)  # fmt: skip
def test_analyze_model_refuses_what_does_not_fit(files, extra, fragment):
    root, data, model = files
    args = [data, "--model", model, "--group", "llm", "--out", root / "refused", *extra]
    code, output = analyze(*args)
    assert code == 2 and fragment in output and len(output.strip().splitlines()) == 1, output
    code, output = analyze(data, "--ordered", "all", "--out", root / "refused")
    assert code == 2 and "error: --ordered goes with --model" in output
    assert not (root / "refused").exists()


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_analyze_model_ordered_equals_plain_semtools(files):
    """`vaar analyze --model --ordered all`: the report's estimates are semTools' to 1e-6."""
    root, data, model = files
    out = root / "analyzed"
    code, output = analyze(data, "--model", model, "--group", "llm", "--ordered", "all",
                           "--out", out)  # fmt: skip
    assert code == 0, output
    folder = out / "answers"
    doc = json.loads((folder / "estimates.json").read_text(encoding="utf-8"))
    assert doc["study"]["estimator"] == "WLSMV"
    script = root / "plain-analyze.R"
    script.write_text(PLAIN, encoding="utf-8")
    fits_csv, pe_csv = root / "fits-analyze.csv", root / "pe-analyze.csv"
    rscript(script, data, model, ",".join(ITEMS), fits_csv, pe_csv)
    plain = pd.read_csv(pe_csv, keep_default_na=False, na_values=["NA"])
    est = pd.read_csv(folder / "estimates.csv", keep_default_na=False, na_values=["NA"])
    est = est[est["level"].isin(plain["level"]) & (est["op"] != "r2")]
    key = ["level", "group", "lhs", "op", "rhs"]
    merged = est.merge(plain, on=key, suffixes=("", "_plain"), validate="one_to_one")
    assert len(merged) == len(plain) == len(est)
    assert_close(merged["est"], merged["est_plain"], "est")
    assert_close(merged["se"], merged["se_plain"], "se")


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_analyze_model_degenerate_options(files):
    """A group answering 3 to everything is left out with its reason; --degenerate decides
    what an item without variance in one group does (default: dropped in every group)."""
    root, data, model = files
    table = pd.read_csv(data)
    one_item = table[table["llm"] == "llm-a"].assign(llm="flat-a1", a1=2.0)
    constant = table[table["llm"] == "llm-b"].assign(llm="threes", **dict.fromkeys(ITEMS, 3.0))
    mixed = root / "mixed.csv"
    pd.concat([table, one_item, constant], ignore_index=True).to_csv(mixed, index=False)
    for strategy, dropped, excluded in (
        (None, ["a1"], ["threes"]),
        ("exclude_group", [], ["threes", "flat-a1"]),
    ):
        out = root / f"degenerate-{strategy}"
        extra = ["--degenerate", strategy] if strategy else []
        code, output = analyze(mixed, "--model", model, "--group", "llm", "--estimator", "ML",
                               "--out", out, *extra)  # fmt: skip
        assert code == 0, output
        doc = json.loads((out / "mixed" / "estimates.json").read_text(encoding="utf-8"))
        diag = doc["diagnostics"]
        assert [d["item"] for d in diag["dropped_items"]] == dropped
        reasons = {e["group"]: e["reason"] for e in diag["excluded_groups"]}
        assert list(reasons) == excluded
        assert reasons["threes"] == (
            "answered 3 to every item: no value–action variation to estimate"
        )
    out = root / "degenerate-fail"
    code, output = analyze(mixed, "--model", model, "--group", "llm", "--estimator", "ML",
                           "--out", out, "--degenerate", "fail")  # fmt: skip
    assert code == 1 and "degenerate='fail'" in output and "group threes" in output
