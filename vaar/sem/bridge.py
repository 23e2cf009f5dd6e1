"""The R bridge: one embedded R per process (rpy2), the r/*.R functions sourced once, calls that
pass data (frames, strings, numbers) and return plain Python data. No R code is ever built from
user input: models and options travel as arguments."""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import pandas as pd

from vaar.errors import VaarError
from vaar.files import package_path

R_DIR = package_path("sem", "r")
R_FILES = ("call.R", "fit.R", "fiml.R", "blocks.R", "ordinal.R", "compare.R", "ladder.R", "lrt.R")

# The r/*.R functions that read a lavaan model (or a list of models), and its position among
# their arguments: every model passes the allow-list (vaar.sem.grammar) here, on its way into R,
# whichever path it came by.
MODEL_ARGUMENT = {"vaar_parse": 0, "vaar_fit_ladder": 1, "vaar_lrt_refits": 1}

_lock = threading.Lock()
_sourced = False


def _robjects():
    # One BLAS thread per R process: the ladder forks one R per level, and a threaded OpenBLAS
    # (if installed) would oversubscribe the cores and can hang after fork.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Starting R puts R's library directories (incl. /usr/lib/x86_64-linux-gnu) on
    # LD_LIBRARY_PATH; every process started afterwards (servers, spawned workers) would then
    # load Debian's libpython instead of this interpreter's own and fail on `import ssl`. R is
    # loaded by then, so the variable is put back as it was.
    before = os.environ.get("LD_LIBRARY_PATH")
    try:
        import rpy2.robjects as ro
        from rpy2.robjects import pandas2ri
        from rpy2.robjects.conversion import localconverter
    except Exception as exc:  # rpy2 raises several kinds when R is missing or too new
        raise VaarError(f"cannot start R through rpy2 ({exc}); run scripts/setup.sh") from None
    finally:
        if before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = before
    return ro, pandas2ri, localconverter


def _source_once(ro) -> None:
    global _sourced
    if _sourced:
        return
    for name in R_FILES:
        path = R_DIR / name
        if not path.exists():
            raise VaarError(f"R function file missing: {path}")
        ro.r["source"](str(path))
    _sourced = True


def _to_r(ro, value):
    """Python argument -> R object; lists become character/numeric vectors, dicts named lists."""
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, dict):
        return ro.ListVector({k: _to_r(ro, v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value):
            return ro.StrVector(list(value))
        return ro.FloatVector([float(v) for v in value])
    return value


def _to_python(ro, obj):
    """R result -> dicts, lists, scalars and DataFrames (NA becomes None or NaN)."""
    from rpy2.rinterface_lib.sexp import NULLType
    from rpy2.rlike.container import NamedList

    if obj is None or isinstance(obj, NULLType):
        return None
    if isinstance(obj, pd.DataFrame):
        frame = obj.reset_index(drop=True)
        for col in frame.columns:
            if frame[col].dtype == object:
                frame[col] = [None if _is_na(ro, v) else v for v in frame[col]]
        return frame
    if isinstance(obj, np.ndarray):  # numeric/logical vectors under pandas2ri
        values = [None if _is_na(ro, v) else v.item() for v in obj.ravel()]
        return values[0] if len(values) == 1 else values
    if isinstance(obj, NamedList):
        names = list(obj.names())
        return {str(n): _to_python(ro, v) for n, v in zip(names, obj, strict=True)}
    if isinstance(obj, ro.vectors.ListVector):
        return {str(n): _to_python(ro, v) for n, v in obj.items()}
    if isinstance(obj, ro.vectors.Vector):
        values = [None if _is_na(ro, v) else v for v in obj]
        names = obj.names
        if names is not None and not isinstance(names, NULLType) and len(names) == len(values):
            return {str(n): v for n, v in zip(names, values, strict=True)}
        return values[0] if len(values) == 1 else values
    return obj


def _is_na(ro, value) -> bool:
    if value is ro.NA_Character or value is ro.NA_Logical or value is ro.NA_Integer:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def call(function: str, *args, **kwargs):
    """Call an r/*.R function with Python data and return plain Python data.
    Serialised by a lock: embedded R is not thread-safe. A model argument (MODEL_ARGUMENT)
    is checked against the allow-list first, before R is started."""
    if function in MODEL_ARGUMENT:
        args = _checked_model(function, args)
    ro, pandas2ri, localconverter = _robjects()
    with _lock, localconverter(ro.default_converter + pandas2ri.converter):
        _source_once(ro)
        r_args = [_to_r(ro, a) for a in args]
        r_kwargs = {k: _to_r(ro, v) for k, v in kwargs.items() if v is not None}
        result = ro.r[function](*r_args, **r_kwargs)
        return _to_python(ro, result)


def _checked_model(function: str, args: tuple) -> tuple:
    from vaar.sem.grammar import check_model

    i = MODEL_ARGUMENT[function]
    if len(args) <= i:
        raise VaarError(f"{function}: the lavaan model argument is missing")
    model = args[i]  # one model text, or a list of them (vaar_lrt_refits)
    checked = [check_model(m) for m in model] if isinstance(model, list) else check_model(model)
    return (*args[:i], checked, *args[i + 1 :])
