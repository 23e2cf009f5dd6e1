"""The vaar model as lavaan syntax, generated from the study's instruments: one factor per
privacy instrument (or per privacy subscale), PSA and AoDS factors, and AoDS ~ privacy + PSA.
Reverse-keyed items are scored before fitting; the first indicator of every factor is still a
positively keyed item, so lavaan's first-item marker gives every factor the keyed direction."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from vaar.errors import VaarError
from vaar.instruments import OUTCOME_ROLE, PRIVACY, ROLES

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class StructuralPath(NamedTuple):
    """One regression lhs ~ rhs of the SEM; `role` is the role of the rhs instrument (e.g.
    "privacy"). A tuple: it unpacks as (lhs, rhs, role)."""

    lhs: str
    rhs: str
    role: str


@dataclass
class VaarModel:
    syntax: str
    paths: list[StructuralPath]
    items: list[str]
    factors: dict[str, list[str]] = field(default_factory=dict)  # factor -> its items, in order


def instrument_factor_name(instrument) -> str:
    """One factor for a whole instrument: its only factor name, else the common prefix of its
    subscale names (IUIPC_AWA, IUIPC_COLL, IUIPC_CTRL -> IUIPC), else its id in upper case."""
    factors = list(dict.fromkeys(i.factor for i in instrument.items))
    if len(factors) == 1:
        return factors[0]
    prefix = os.path.commonprefix([f.split("_") for f in factors])
    name = "_".join(prefix)
    if name and NAME.match(name):
        return name
    return re.sub(r"[^A-Za-z0-9_]", "_", str(instrument.id)).upper()


def _marker_first(items: list) -> list:
    """Items with a positively keyed one first (the factor's marker); order otherwise kept."""
    for index, item in enumerate(items):
        if not item.reverse:
            return [item, *items[:index], *items[index + 1 :]]
    return list(items)


def build_vaar_model(instruments, privacy: str = "instrument") -> VaarModel:
    """lavaan syntax for AoDS ~ privacy factor(s) + PSA from instrument objects (anything with
    `id`, `role` and `items` of `id`, `reverse`, `factor`)."""
    if privacy not in ("instrument", "subscales"):
        raise VaarError(f"privacy must be 'instrument' or 'subscales', got {privacy!r}")
    by_role: dict[str, list] = {role: [] for role in ROLES}
    for instrument in instruments:
        if instrument.role not in by_role:
            raise VaarError(
                f"instrument {instrument.id}: unknown role {instrument.role!r} "
                f"(known: {', '.join(ROLES)})"
            )
        by_role[instrument.role].append(instrument)
    if len(by_role[OUTCOME_ROLE]) != 1:
        raise VaarError(
            f"the vaar model needs exactly one {OUTCOME_ROLE} instrument (AoDS), got "
            f"{len(by_role[OUTCOME_ROLE])}"
        )
    values = [role for role in ROLES if role != OUTCOME_ROLE]
    if not any(by_role[role] for role in values):
        raise VaarError(f"the vaar model needs a {' or a '.join(values)} instrument")

    factors: dict[str, list] = {}
    roles: dict[str, str] = {}

    def add(name: str, items: list, role: str, instrument) -> None:
        if name in factors:
            raise VaarError(f"instrument {instrument.id}: factor name {name!r} is used twice")
        factors[name] = _marker_first(items)
        roles[name] = role

    for role in ROLES:
        for instrument in by_role[role]:
            if role == PRIVACY and privacy == "subscales":
                for name in dict.fromkeys(i.factor for i in instrument.items):
                    add(name, [i for i in instrument.items if i.factor == name], role, instrument)
            else:
                add(instrument_factor_name(instrument), list(instrument.items), role, instrument)

    for name, items in factors.items():
        if len(items) < 2:
            raise VaarError(f"factor {name} has {len(items)} item(s); a factor needs at least 2")
    outcome = next(n for n, r in roles.items() if r == OUTCOME_ROLE)
    predictors = [n for n, r in roles.items() if r != OUTCOME_ROLE]
    lines = [f"{name} =~ " + " + ".join(i.id for i in items) for name, items in factors.items()]
    lines.append(f"{outcome} ~ " + " + ".join(predictors))
    return VaarModel(
        syntax="\n".join(lines) + "\n",
        paths=[StructuralPath(outcome, p, roles[p]) for p in predictors],
        items=[i.id for items in factors.values() for i in items],
        factors={name: [i.id for i in items] for name, items in factors.items()},
    )
