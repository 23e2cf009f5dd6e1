"""The simulated provider's planted protocol effects, the ground truth of multiverse tests: an
order effect (paths shifted when AoDS comes before the value instruments) and a history-reset
effect (paths shifted for AoDS items asked with no earlier instrument in the history). Off by
default: then the protocol changes no answer."""

import asyncio
import itertools

import pytest

from vaar.collection import collect
from vaar.collection.prompts import item_prompt
from vaar.collection.providers import ChatRequest
from vaar.collection.providers.simulated import SimulatedProvider, planted_paths, sharing_first
from vaar.collection.sessions import PlannedItem
from vaar.config import ModelSpec, parse_study
from vaar.data import long_table, score_items, wide_table
from vaar.errors import ConfigError
from vaar.instruments import load_instruments

PSA, AODS, PRIV = load_instruments(["psa", "aods", "westin"])


def provider(order, **params) -> SimulatedProvider:
    spec = ModelSpec(name="m", provider="simulated", params={"malformed_rate": 0, **params})
    return SimulatedProvider(spec, order)


def ask(p: SimulatedProvider, seed: int, item, history=()) -> str:
    prompt = item_prompt(AODS, [PlannedItem(item, 1)], True)
    messages = [{"role": "system", "content": "s"}, *history, {"role": "user", "content": prompt}]
    return asyncio.run(p.complete(ChatRequest(messages, seed))).text


def earlier_turn(instrument) -> list[dict]:
    prompt = item_prompt(instrument, [PlannedItem(instrument.items[0], 1)], True)
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": "3"}]


SEEDS = range(60)


def answers(p, history=()):
    return [ask(p, seed, item, history) for seed in SEEDS for item in AODS.items[:3]]


def test_without_planted_effects_the_protocol_changes_no_answer():
    paper, first = [PRIV, PSA, AODS], [AODS, PRIV, PSA]
    base = answers(provider(paper), earlier_turn(PSA))
    assert answers(provider(first), earlier_turn(PSA)) == base
    assert answers(provider(paper)) == base  # history reset: the same answers
    zero = {"order_shift_pc": 0, "order_shift_psa": 0, "reset_shift_pc": 0, "reset_shift_psa": 0}
    assert answers(provider(paper, **zero), earlier_turn(PSA)) == base


def test_an_order_effect_changes_aods_answers_only_when_aods_comes_first():
    paper, first = [PRIV, PSA, AODS], [AODS, PRIV, PSA]
    shifted = {"order_shift_pc": 1.5}
    base = answers(provider(paper), earlier_turn(PSA))
    assert answers(provider(paper, **shifted), earlier_turn(PSA)) == base
    changed = answers(provider(first, **shifted))
    assert sum(a != b for a, b in zip(changed, base, strict=True)) > len(base) // 5
    # value items are never shifted
    value = [ask(provider(first, **shifted), s, PSA.items[0]) for s in SEEDS]
    assert value == [ask(provider(paper), s, PSA.items[0]) for s in SEEDS]


def test_a_reset_effect_changes_aods_answers_only_without_an_earlier_instrument_in_view():
    paper = [PRIV, PSA, AODS]
    p = provider(paper, reset_shift_psa=-1.5)
    carried = answers(p, earlier_turn(PSA))
    assert carried == answers(provider(paper), earlier_turn(PSA))  # history kept: no effect
    assert answers(p, earlier_turn(AODS)) != carried  # only AoDS turns in view: a reset
    reset = answers(p)
    assert sum(a != b for a, b in zip(reset, carried, strict=True)) > len(carried) // 5
    # AoDS asked first has nothing earlier to lose: no reset effect
    assert answers(provider([AODS, PRIV, PSA], reset_shift_psa=-1.5)) == answers(
        provider([AODS, PRIV, PSA])
    )


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ((AODS, PRIV, PSA), True), ((AODS, PSA, PRIV), True), ((AODS, PSA), True),
        ((PRIV, AODS, PSA), False), ((PRIV, PSA, AODS), False), ((PSA, AODS), False),
        ((PRIV, PSA), False), ((AODS,), True),
    ],
)  # fmt: skip
def test_sharing_first_reads_the_block_order(roles, expected):
    assert sharing_first(list(roles)) is expected


def test_planted_paths_under_each_protocol():
    params = {"profile": "aligned", "order_shift_pc": 1.0, "reset_shift_psa": -0.8}
    assert planted_paths(params) == {"privacy": -0.5, "prosocial": 0.5}
    assert planted_paths(params, aods_first=True) == {"privacy": 0.5, "prosocial": 0.5}
    assert planted_paths(params, reset=True) == pytest.approx({"privacy": -0.5, "prosocial": -0.3})
    both = planted_paths(params, aods_first=True, reset=True)
    assert both == pytest.approx({"privacy": 0.5, "prosocial": -0.3})


@pytest.mark.parametrize("key", ["order_shift_pc", "order_shift_psa", "reset_shift_pc"])
def test_knobs_are_validated_like_the_other_params(key):
    model = {"name": "m", "provider": "simulated", "params": {key: "a lot"}}
    raw = {"name": "t", "sessions_per_model": 2, "instruments": ["psa", "aods"], "models": [model]}
    with pytest.raises(ConfigError, match=rf"models\[0\]\.params\.{key}: Input should be"):
        parse_study(raw)


def test_collected_paths_flip_where_the_effects_are_planted(tmp_path):
    """Scale-score correlations of every condition: the signs of the planted paths."""
    models = [
        {"name": "stable", "provider": "simulated"},
        {"name": "order", "provider": "simulated", "params": {"order_shift_pc": 1.0}},
        {"name": "reset", "provider": "simulated", "params": {"reset_shift_psa": -1.0}},
    ]
    study = parse_study({
        "name": "planted", "seed": 11, "sessions_per_model": 80,
        "instruments": ["westin", "psa", "aods"], "output_dir": str(tmp_path / "out"),
        "session": {"items_per_turn": 4}, "models": models,
        "multiverse": {"block_order": ["paper", "sharing_first"],
                       "history": ["session", "instrument"]},
    })  # fmt: skip
    summary = asyncio.run(collect(study, progress=False))
    assert summary.complete
    instruments = load_instruments(study.instruments)
    wide = score_items(wide_table(long_table(summary.store_path)), instruments)
    scale = {i.role: wide[[it.id for it in i.items]].mean(axis=1) for i in instruments}
    for (model, variant), rows in wide.groupby(["model", "variant"]):
        order, history = variant.split(".")
        r_pc = scale["privacy"][rows.index].corr(scale["sharing"][rows.index])
        r_psa = scale["prosocial"][rows.index].corr(scale["sharing"][rows.index])
        flips_pc = model == "order" and order == "sharing_first"
        flips_psa = model == "reset" and order == "paper" and history == "instrument"
        assert bool(r_pc > 0) is flips_pc, (model, variant, r_pc)
        assert bool(r_psa < 0) is flips_psa, (model, variant, r_psa)


def test_every_block_order_of_three_instruments_is_read(tmp_path):
    for order in itertools.permutations([PRIV, PSA, AODS]):
        p = provider(list(order), order_shift_pc=1.0)
        assert p.aods_first is (order[0] is AODS)
