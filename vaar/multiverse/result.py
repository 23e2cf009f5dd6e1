"""MultiverseResult: the comparison of a model's analyses across protocol variants, typed, and
the same in memory and in estimates.json (`multiverse`, schema 1.1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from vaar.sem.result import json_ready, json_records

TABLES = ("vaar", "paths", "flips", "stability", "verdicts", "order", "order_paths")


@dataclass(kw_only=True)
class MultiverseResult:
    """`factors`: variant -> {factor: level}; `varying`: the factors whose level differs;
    `base_variant`: the grid's first variant (the tie-break of the majority rule and the one
    the report's other sections show). Tables: `vaar` (model x variant, with bootstrap CI
    columns when the study bootstraps), `paths` (model x variant x path conclusions), `flips`
    (model x path), `stability` and `verdicts` (per model), `order` (per model: the ladder
    across block orders) and `order_paths` (model x order x path). `rules` says in words how
    each number is defined; `failures` lists variants whose analysis failed, with the reason."""

    factors: dict[str, dict[str, str]]
    varying: list[str]
    base_variant: str
    alpha: float
    vaar: pd.DataFrame
    paths: pd.DataFrame
    flips: pd.DataFrame
    stability: pd.DataFrame
    verdicts: pd.DataFrame
    order: pd.DataFrame = field(default_factory=pd.DataFrame)
    order_paths: pd.DataFrame = field(default_factory=pd.DataFrame)
    failures: dict[str, str] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)

    @property
    def variants(self) -> list[str]:
        return list(self.factors)

    def to_dict(self) -> dict:
        return json_ready(
            {
                "factors": self.factors,
                "varying": self.varying,
                "variants": self.variants,
                "base_variant": self.base_variant,
                "alpha": self.alpha,
                **{name: json_records(getattr(self, name)) for name in TABLES},
                "failures": self.failures,
                "rules": self.rules,
            }
        )

    @classmethod
    def from_dict(cls, section: dict) -> MultiverseResult:
        return cls(
            factors=section["factors"],
            varying=section["varying"],
            base_variant=section["base_variant"],
            alpha=section["alpha"],
            **{name: pd.DataFrame(section[name]) for name in TABLES},
            failures=section["failures"],
            rules=section["rules"],
        )
