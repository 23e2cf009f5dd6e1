"""Scale reliability: Cronbach's alpha and McDonald's omega from a one-factor ML CFA.

The one-factor model is small enough to fit here with scipy (no R round trip per model and
scale). It minimises the same ML discrepancy lavaan does, so omega equals
semTools::compRelSEM(cfa(..., std.lv = TRUE), obs.var = FALSE) on the same data, which the
tests check with plain Rscript.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize

THETA_FLOOR = 1e-6  # residual variances are kept positive (a Heywood case hits this floor)


def cronbach_alpha(x: np.ndarray) -> float:
    """alpha = k/(k-1) * (1 - sum of item variances / variance of the sum); complete cases only."""
    x = x[~np.isnan(x).any(axis=1)]
    n, k = x.shape
    if k < 2 or n < 2:
        return math.nan
    total = x.sum(axis=1).var(ddof=1)
    if total == 0:
        return math.nan
    return float(k / (k - 1) * (1 - x.var(axis=0, ddof=1).sum() / total))


def one_factor_ml(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Loadings and residual variances of a one-factor model (factor variance 1) fitted by ML
    to covariance matrix `s`; the flag says whether the optimiser converged."""
    k = s.shape[0]
    values, vectors = np.linalg.eigh(s)
    lam0 = vectors[:, -1] * math.sqrt(max(values[-1], 1e-12))
    theta0 = np.maximum(np.diag(s) - lam0**2, 0.1 * np.diag(s))
    floor = THETA_FLOOR * np.diag(s)

    def objective(params):
        lam, theta = params[:k], params[k:]
        sigma = np.outer(lam, lam) + np.diag(theta)
        sign, logdet = np.linalg.slogdet(sigma)
        if sign <= 0:
            return np.inf, np.zeros_like(params)
        inv = np.linalg.inv(sigma)
        w = inv - inv @ s @ inv
        value = logdet + np.trace(s @ inv)
        return value, np.concatenate([2 * w @ lam, np.diag(w)])

    bounds = [(None, None)] * k + [(f, None) for f in floor]
    fit = minimize(
        objective,
        np.concatenate([lam0, theta0]),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10},
    )
    lam, theta = fit.x[:k], fit.x[k:]
    if lam.sum() < 0:
        lam = -lam
    return lam, theta, bool(fit.success)


def mcdonald_omega(x: np.ndarray) -> tuple[float, str]:
    """omega = (sum lambda)^2 / ((sum lambda)^2 + sum theta), with a note on what was done.

    Complete cases; items without variance are left out (a one-factor model cannot include a
    constant), and omega needs at least 3 varying items to be identified.
    """
    x = x[~np.isnan(x).any(axis=1)]
    if len(x) < 2:
        return math.nan, f"omega needs complete answers from sessions ({len(x)} complete)"
    varying = x.var(axis=0) > 0
    note = "" if varying.all() else f"{int((~varying).sum())} constant item(s) left out"
    x = x[:, varying]
    n, k = x.shape
    if k < 3 or n <= k:
        return math.nan, f"omega needs >= 3 varying items and more sessions than items ({note})"
    s = np.cov(x, rowvar=False, ddof=0)  # ML covariance, as lavaan (omega is scale-free anyway)
    lam, theta, converged = one_factor_ml(s)
    if not converged:
        return math.nan, "one-factor CFA did not converge"
    if (theta <= THETA_FLOOR * np.diag(s) * 1.0001).any():
        note = "; ".join(filter(None, [note, "Heywood case: a residual variance at its floor"]))
    common = lam.sum() ** 2
    return float(common / (common + theta.sum())), note
