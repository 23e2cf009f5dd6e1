"""Answers with planted value -> action paths, for checking that VAAR finds what was planted.

Every privacy item loads on one privacy-concern factor, every prosocial item on PSA, every
sharing item on AoDS, and AoDS = b_privacy * PC + b_prosocial * PSA + N(0, 1). Items are
lambda * factor + noise, reverse-keyed items flipped, then (by default) rounded onto the
instrument's response scale, so the output is a wide table like a real study's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaar.errors import VaarError

ROLES = ("privacy", "prosocial", "sharing")


def simulate_wide(
    models: dict[str, tuple[float, float]],
    instruments,
    *,
    sessions: int = 200,
    loading: float = 0.7,
    discrete: bool = True,
    shifts: dict[str, dict[str, float]] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Wide table (model, session, raw item columns); `models` maps name -> (b_privacy,
    b_prosocial); `shifts` optionally moves a model's factor means: {name: {role: shift}}."""
    roles = {inst.role for inst in instruments}
    if not set(ROLES) <= roles:
        raise VaarError(f"simulation needs instruments for roles {ROLES}, got {sorted(roles)}")
    rng = np.random.default_rng(seed)
    frames = []
    for name, (b_privacy, b_prosocial) in models.items():
        pc, psa = rng.standard_normal((2, sessions))
        latent = {
            "privacy": pc,
            "prosocial": psa,
            "sharing": b_privacy * pc + b_prosocial * psa + rng.standard_normal(sessions),
        }
        frame = {"model": name, "session": [f"{name}-{i:05d}" for i in range(sessions)]}
        for inst in instruments:
            eta = latent[inst.role]
            eta = (eta - eta.mean()) / eta.std() if inst.role == "sharing" else eta
            eta = eta + (shifts or {}).get(name, {}).get(inst.role, 0.0)
            lo, hi = inst.scale_min, inst.scale_max
            for item in inst.items:
                x = loading * eta + np.sqrt(1 - loading**2) * rng.standard_normal(sessions)
                x = -x if item.reverse else x
                value = (lo + hi) / 2 + x * (hi - lo) / 4
                frame[item.id] = np.clip(np.round(value), lo, hi) if discrete else value
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


def long_from_wide(
    wide: pd.DataFrame, instruments, *, invalid: float = 0.0, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(long, wide) for `wide`: item order shuffled per session and instrument (positions),
    and a share `invalid` of answers marked invalid (value NaN in both returned tables)."""
    rng = np.random.default_rng(seed)
    wide = wide.copy()
    rows = []
    for idx, record in wide.iterrows():
        for inst in instruments:
            items = [i.id for i in inst.items if i.id in wide.columns]
            for position, item in enumerate(rng.permutation(items), start=1):
                bad = rng.random() < invalid
                value = np.nan if bad else float(record[item])
                if bad:
                    wide.at[idx, item] = np.nan
                rows.append(
                    {
                        "model": record["model"], "session": record["session"],
                        "instrument": inst.id, "item": item, "position": position,
                        "raw": "" if bad else str(int(value)), "value": value,
                        "status": "invalid" if bad else "ok", "attempts": 1,
                    }
                )  # fmt: skip
    return pd.DataFrame(rows), wide
