"""Conditions: what one ModelRun collects. A study without multiverse has one condition per
model, the study's own protocol; a multiverse study one per (model x variant), each with its
own sessions in the same store, its variant's settings applied (vaar.protocol.resolve).

A condition's sessions follow from (study seed, model, variant, session index) as a plain
study's follow from (study seed, model, session index), so each is reproducible and resumable;
a study without multiverse keeps its session ids and seeds exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaar.collection.sessions import derive_seed, session_id
from vaar.collection.store import condition_name
from vaar.errors import ConfigError
from vaar.protocol import is_multiverse, resolve, variants


@dataclass(frozen=True)
class Condition:
    spec: object  # vaar.config.ModelSpec, with the variant's temperature
    session: object  # vaar.config.SessionSpec, with the variant's settings
    instruments: list  # in the variant's block order, with its instructions
    personas: list[str]
    variant: str = ""  # '' for a study without multiverse

    @property
    def name(self) -> str:
        return condition_name(self.spec.name, self.variant)

    def session_id(self, index: int) -> str:
        if not self.variant:
            return session_id(self.spec.name, index)
        return f"{self.spec.name}/{self.variant}/{index:04d}"  # names never hold '/'

    def seed(self, study_seed: int, index: int) -> int:
        if not self.variant:
            return derive_seed(study_seed, self.spec.name, index)
        return derive_seed(study_seed, self.spec.name, self.variant, index)

    def design(self) -> dict:
        """What must not change between runs of this condition (the store's fingerprint)."""
        return {
            "model": self.spec.name,
            "variant": self.variant,
            "params": self.spec.params,
            "session": self.session.model_dump(mode="json"),
            "instruments": [[i.id, i.content_hash] for i in self.instruments],
            "personas": self.personas,
        }


def conditions(study, instruments, personas: list[str]) -> list[Condition]:
    """The study's conditions, model by model (each model's variants in the study's order)."""
    if not is_multiverse(study):
        return [Condition(m, study.session, instruments, personas) for m in study.models]
    try:
        resolved = [(v.name, resolve(study, v, instruments)) for v in variants(study)]
    except ValueError as exc:  # a file changed since the study was validated
        raise ConfigError(f"{study.name}: {exc}") from None
    out = []
    for model in study.models:
        for name, r in resolved:
            spec = model
            if r.temperature is not None:
                params = {**model.params, "temperature": r.temperature}
                spec = model.model_copy(update={"params": params})
            chosen = personas if r.personas is None else r.personas
            out.append(Condition(spec, r.session, r.instruments, chosen, name))
    return out
