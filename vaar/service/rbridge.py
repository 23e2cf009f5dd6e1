"""The two R calls the service makes itself, in a worker process only: load lavaan, and let
lavaan parse a model string (passed as an argument, never pasted into R code)."""

from __future__ import annotations

import re
from functools import cache

from vaar.errors import VaarError


@cache
def load():
    """Start embedded R and load lavaan; returns the lavaan package handle."""
    from rpy2.robjects.packages import importr

    return importr("lavaan")


def observed_variables(syntax: str) -> list[str]:
    """lavaan's own parse of `syntax`; VaarError with lavaan's message when it is not valid."""
    from rpy2.rinterface_lib.embedded import RRuntimeError

    lavaan = load()
    try:
        table = lavaan.lavaanify(syntax)
    except RRuntimeError as exc:
        raise VaarError(f"invalid lavaan model syntax: {_r_message(str(exc))}") from None
    return [str(v) for v in lavaan.lavNames(table, "ov")]


def _r_message(text: str) -> str:
    """R's error without the call it came from: 'Error in f(x) : msg' -> 'msg'."""
    text = re.sub(r"^Error in .*? :\s*", "", text.strip(), flags=re.S)
    text = re.sub(r"^<text>:\d+:\d+:\s*", "", text)
    first = text.splitlines()[0] if text else "lavaan could not parse the model"
    return first.removeprefix("lavaan ERROR: ").strip()
