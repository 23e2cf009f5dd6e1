"""Multi-group SEM with lavaan (through rpy2 and the R functions in r/): the vaar model from the
instruments, the measurement-invariance ladder with its decisions, any user model, and the
reproduction bundle. Results are plain pandas/dicts (SemResult); nothing here computes VAAR."""

from vaar.lazy import lazy_exports

EXPORTS = {
    "SemResult": "result",
    "StructuralPath": "model",
    "VaarModel": "model",
    "build_vaar_model": "model",
    "fit_ladder": "ladder",
    "observed_variables": "ladder",
    "parse_model": "ladder",
    "write_bundle": "bundle",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
