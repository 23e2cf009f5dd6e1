"""Multiverse studies: is a model's value-action alignment a property of the model or of the
protocol? A study declares protocol variants (`[multiverse]` grid and/or `[[variants]]`,
vaar.protocol); every (model x variant) is a condition with its own sessions in the study's
store (vaar.collection.conditions). The tables then carry the variant of each session:

- wide table (vaar.data.wide_table): `model`, `variant`, `session`, then one column per item;
- long table: `model`, `variant`, `session`, `instrument`, `item`, ... (LONG_COLUMNS + variant).

`variant_factors(study)` describes each variant by the level of every factor. The analysis
across variants is vaar.multiverse.analysis (docs/collection.md, "Multiverse").
"""

from __future__ import annotations

from vaar.protocol import FACTORS, is_multiverse, variants

__all__ = ["FACTORS", "is_multiverse", "variant_factors", "variant_names"]


def variant_names(study) -> list[str]:
    """The study's variant names, grid variants first (the grid's order), then [[variants]];
    [] for a study without multiverse."""
    return [v.name for v in variants(study)]


def variant_factors(study) -> dict[str, dict[str, str]]:
    """Variant name -> {factor: level label} for every factor of vaar.protocol.FACTORS (in that
    order), the study's own setting for the factors a variant leaves; {} for a study without
    multiverse. Equal protocols get equal labels (a block order is its instrument ids joined
    by '-', e.g. 'iuipc10-psa-aods'; see vaar.protocol.factors)."""
    from vaar.instruments import load_instruments
    from vaar.protocol import factors

    found = variants(study)
    if not found:
        return {}
    instruments = load_instruments(study.instruments)
    return {v.name: factors(study, v, instruments) for v in found}
