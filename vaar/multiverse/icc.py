"""Intraclass correlations of a targets x raters table (Shrout & Fleiss 1979; McGraw & Wong
1996), from the two-way ANOVA mean squares. Here the targets are a model's profile scores
(its mean scored answer per item) and the raters are the protocol variants.

- ICC(2,1) = ICC(A,1): two-way random effects, absolute agreement, single rater. A variant that
  shifts every answer by a constant lowers it. vaar reports this one as `icc`.
- ICC(3,1) = ICC(C,1): two-way mixed effects, consistency, single rater. A constant shift does
  not lower it. Reported beside as `icc_consistency`.

Checked against Shrout & Fleiss's (1979) Table 2 example (6 targets, 4 judges: ICC(2,1) = .29,
ICC(3,1) = .71) in tests/test_multiverse_analysis.py. pingouin computes the same, but pulls in
scikit-learn and statsmodels for ten lines of arithmetic.
"""

from __future__ import annotations

import math

import numpy as np


def icc(table) -> dict[str, float]:
    """ICC(2,1) and ICC(3,1) of a targets x raters array (rows with a missing rating are left
    out); NaN for fewer than 2 targets or raters, or no variance at all."""
    x = np.asarray(table, dtype=float)
    x = x[~np.isnan(x).any(axis=1)] if x.ndim == 2 else np.empty((0, 0))
    n, k = x.shape if x.ndim == 2 else (0, 0)
    nan = {"icc": math.nan, "icc_consistency": math.nan, "n_targets": int(n), "n_raters": int(k)}
    if n < 2 or k < 2:
        return nan
    grand = x.mean()
    ms_rows = k * ((x.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    ms_cols = n * ((x.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    residual = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + grand
    ms_error = (residual**2).sum() / ((n - 1) * (k - 1))
    agreement = ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n
    consistency = ms_rows + (k - 1) * ms_error
    return {
        "icc": _ratio(ms_rows - ms_error, agreement),
        "icc_consistency": _ratio(ms_rows - ms_error, consistency),
        "n_targets": int(n),
        "n_raters": int(k),
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else math.nan
