"""Multi-group SEM with lavaan (through rpy2 and the R functions in r/): the vaar model from the
instruments, the measurement-invariance ladder with its decisions, any user model, and the
reproduction bundle. Results are plain pandas/dicts (SemResult); nothing here computes VAAR."""

from vaar.sem.bundle import write_bundle
from vaar.sem.ladder import analyze_data, fit_ladder, observed_variables, parse_model
from vaar.sem.model import StructuralPath, VaarModel, build_vaar_model
from vaar.sem.result import SemResult

__all__ = [
    "SemResult",
    "StructuralPath",
    "VaarModel",
    "analyze_data",
    "build_vaar_model",
    "fit_ladder",
    "observed_variables",
    "parse_model",
    "write_bundle",
]
