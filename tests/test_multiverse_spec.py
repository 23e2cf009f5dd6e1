"""Multiverse studies as data (vaar.protocol): the `[multiverse]` grid and `[[variants]]`, their
names and descriptors (vaar.multiverse.variant_factors), and one-line errors naming the field
for every kind of bad declaration."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from vaar.cli import main
from vaar.config import load_study, parse_study
from vaar.errors import ConfigError
from vaar.multiverse import variant_factors, variant_names
from vaar.protocol import FACTORS

EXAMPLE = Path(__file__).parents[1] / "data/examples/multiverse.toml"


def raw(models=1, **over):
    study = {
        "name": "mv",
        "sessions_per_model": 3,
        "instruments": ["iuipc10", "psa", "aods"],
        "models": [{"name": f"m{k}", "provider": "simulated"} for k in range(models)],
    }
    study.update(over)
    return study


def write(tmp_path, text: str, name="study.toml") -> Path:
    path = tmp_path / name
    path.write_text(
        'name = "mv"\nsessions_per_model = 2\ninstruments = ["iuipc10", "psa", "aods"]\n'
        f'output_dir = "{tmp_path / "out"}"\n{text}\n'
        '[[models]]\nname = "m"\nprovider = "simulated"\n',
        encoding="utf-8",
    )
    return path


def test_the_grid_crosses_its_factors_and_names_each_variant_by_the_levels_that_vary():
    study = parse_study(
        raw(multiverse={"block_order": ["paper", "sharing_first"], "item_order": ["fixed"],
                        "history": ["session", "instrument", {"mode": "last_k", "last_k": 2}]})
    )  # fmt: skip
    names = variant_names(study)
    assert names == [
        "paper.session", "paper.instrument", "paper.last2",
        "sharing_first.session", "sharing_first.instrument", "sharing_first.last2",
    ]  # fmt: skip
    factors = variant_factors(study)
    assert list(factors) == names
    for described in factors.values():
        assert list(described) == list(FACTORS)  # every factor, in one order
    assert factors["paper.last2"] == {
        "block_order": "iuipc10-psa-aods", "item_order": "fixed", "history": "last2",
        "items_per_turn": "1", "temperature": "study", "system_prompt": "study",
        "instructions": "study", "personas": "study",
    }  # fmt: skip
    assert factors["sharing_first.session"]["block_order"] == "aods-iuipc10-psa"
    assert variant_names(study) == names  # stable: the same study gives the same names


def test_named_variants_keep_the_studys_setting_for_what_they_leave():
    study = parse_study(
        raw(
            session={"randomize_items": False, "items_per_turn": 2,
                     "history": {"mode": "session", "max_tokens": 4000}},
            variants=[
                {"name": "base"},
                {"name": "rev", "block_order": "reversed", "temperature": 0.7},
                {"name": "listed", "block_order": ["aods", "psa", "iuipc10"],
                 "history": "instrument", "items_per_turn": 3, "item_order": "shuffled"},
            ],
        )
    )  # fmt: skip
    factors = variant_factors(study)
    assert factors["base"] == {
        "block_order": "iuipc10-psa-aods", "item_order": "fixed", "history": "session-max4000",
        "items_per_turn": "2", "temperature": "study", "system_prompt": "study",
        "instructions": "study", "personas": "study",
    }  # fmt: skip
    assert factors["rev"]["temperature"] == "0.7"
    # equal protocols, equal labels: a named order and the same order listed by ids
    assert factors["rev"]["block_order"] == factors["listed"]["block_order"] == "aods-psa-iuipc10"
    # a history mode given by name keeps the study's token cap
    assert factors["listed"]["history"] == "instrument-max4000"
    assert factors["listed"]["items_per_turn"] == "3"


def test_a_grid_and_named_variants_together_and_a_study_without_either():
    study = parse_study(raw(multiverse={"item_order": ["fixed", "shuffled"]},
                            variants=[{"name": "hot", "temperature": 1.2}]))  # fmt: skip
    assert variant_names(study) == ["fixed", "shuffled", "hot"]
    plain = parse_study(raw())
    assert variant_names(plain) == [] and variant_factors(plain) == {}
    # a study without variants dumps (and so stores its config) as before they existed
    assert "multiverse" not in plain.model_dump() and "variants" not in plain.model_dump()
    assert set(study.model_dump()) >= {"multiverse", "variants"}


def test_the_example_multiverse_study_validates_with_its_planted_effects():
    study = load_study(EXAMPLE)
    factors = variant_factors(study)
    assert len(factors) >= 6 and len(study.models) >= 4
    orders = {f["block_order"] for f in factors.values()}
    assert orders == {"iuipc10-psa-aods", "aods-psa-iuipc10", "aods-iuipc10-psa"}
    params = {m.name: m.params for m in study.models}
    assert params["sim-order"]["order_shift_pc"] and not set(params["sim-stable"]) - {"profile"}


def test_files_are_read_relative_to_the_study_file(tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "formal prompt.txt").write_text("Answer formally.\n", encoding="utf-8")
    (prompts / "terse.toml").write_text('aods = "Be quick."\n', encoding="utf-8")
    (prompts / "people.csv").write_text("persona\nA nurse.\nA pilot.\n", encoding="utf-8")
    path = write(
        tmp_path,
        '[multiverse]\nsystem_prompt = ["prompts/formal prompt.txt"]\n'
        'instructions = ["prompts/terse.toml"]\npersonas = ["prompts/people.csv"]\n',
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    study = load_study(path)
    (name,) = variant_names(study)
    assert name == "formal-prompt.terse.people"  # safe in a name
    factors = variant_factors(study)[name]
    assert (factors["system_prompt"], factors["instructions"], factors["personas"]) == (
        "formal-prompt", "terse", "people",
    )  # fmt: skip


BAD = [
    ({"multiverse": {"colour": ["red"]}}, "multiverse: unknown factor 'colour' (known: block_"),
    ({"variants": [{"name": "v", "tempreature": 1}]}, "variants[0]: unknown factor 'tempreature'"),
    ({"multiverse": {"item_order": []}}, "multiverse.item_order: List should have at least 1"),
    ({"multiverse": {"item_order": ["sorted"]}}, "multiverse.item_order[0]: Input should be"),
    ({"multiverse": {"items_per_turn": [0]}}, "multiverse.items_per_turn[0]: Input should be"),
    ({"multiverse": {"temperature": [3]}}, "multiverse.temperature[0]: Input should be less"),
    ({"multiverse": {}}, "multiverse: no factor to vary (give one of: block_order"),
    ({"multiverse": {"max_conditions": 10}}, "multiverse: no factor to vary"),
    ({"multiverse": {"block_order": ["sideways"]}},
     "multiverse.block_order[0]: unknown block order 'sideways' (named orders: study, paper"),
    ({"multiverse": {"block_order": [["psa", "aods"]]}},
     "multiverse.block_order[0]: ['psa', 'aods'] is not an order of the study's instruments"),
    ({"variants": [{"name": "v", "block_order": ["psa", "psa", "aods"]}]},
     "variants[0].block_order: ['psa', 'psa', 'aods'] is not an order"),
    ({"variants": [{"name": "v", "block_order": ["psa", "aods", "westin"]}]},
     "variants[0].block_order: ['psa', 'aods', 'westin'] is not an order"),
    ({"variants": [{"name": "a"}, {"name": "a"}]},
     "variants: variant names must be unique; repeated: ['a']"),
    ({"multiverse": {"item_order": ["fixed", "shuffled"]}, "variants": [{"name": "fixed"}]},
     "variants: variant names must be unique; repeated: ['fixed']"),
    ({"variants": [{"name": "a/b"}]}, "variants[0].name: String should match pattern"),
    ({"variants": [{"block_order": "paper"}]}, "variants[0].name: Field required"),
    ({"multiverse": {"temperature": [round(0.01 * k, 2) for k in range(60)],
                     "item_order": ["fixed", "shuffled"]}},
     "multiverse: 1 models x 120 variants = 120 conditions, more than max_conditions = 100"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "expected"), BAD)
def test_bad_declarations_are_one_line_naming_the_field(change, expected):
    if "120 conditions" in expected:
        change = {**change, "multiverse": {**change["multiverse"], "max_conditions": 100}}
    with pytest.raises(ConfigError) as err:
        parse_study(raw(**change), source="s.toml")
    message = str(err.value)
    assert "\n" not in message, message
    assert message.startswith("s.toml: ") and expected in message, message


def test_a_large_grid_needs_confirmation():
    levels = {"temperature": [k / 10 for k in range(11)], "item_order": ["fixed", "shuffled"],
              "block_order": ["study", "paper", "reversed", "sharing_first"],
              "items_per_turn": [1, 2]}  # fmt: skip
    with pytest.raises(ConfigError, match=r"5 models x 176 variants = 880 conditions, more than "
                       r"max_conditions = 200; set multiverse.max_conditions = 880"):  # fmt: skip
        parse_study(raw(models=5, multiverse=levels))
    confirmed = parse_study(raw(models=5, multiverse={**levels, "max_conditions": 880}))
    assert len(variant_names(confirmed)) == 176


def test_a_temperature_the_models_provider_rejects_is_named():
    models = [{"name": "o1", "provider": "openai", "base_url": "http://127.0.0.1:9/v1",
               "params": {"reasoning_effort": "low", "max_tokens": 512}}]  # fmt: skip
    with pytest.raises(ConfigError) as err:
        parse_study(raw(variants=[{"name": "t", "temperature": 0.5}]) | {"models": models})
    assert "variants[0].temperature: model 'o1': temperature: the API rejects it" in str(err.value)


@pytest.mark.parametrize(
    ("files", "text", "expected"),
    [
        ({}, 'system_prompt = ["none.txt"]', "multiverse.system_prompt[0]: "),
        ({"empty.txt": "  \n"}, 'system_prompt = ["empty.txt"]', "empty.txt is empty"),
        ({"bin.txt": "a\x00b"}, 'system_prompt = ["bin.txt"]', "binary content"),
        ({"i.toml": 'westin = "x"\n'}, 'instructions = ["i.toml"]', "not one: 'westin'"),
        ({"i.toml": "aods = 3\n"}, 'instructions = ["i.toml"]', "not one: 'aods'"),
        ({"i.toml": "aods = \n"}, 'instructions = ["i.toml"]', "not valid TOML"),
        ({"p.csv": "persona\n"}, 'personas = ["p.csv"]', "p.csv has no rows"),
        ({"p.csv": 'persona\nA\n""\n'}, 'personas = ["p.csv"]', "empty persona on line(s) [3]"),
    ],
)
def test_bad_files_are_named_by_the_field_that_names_them(tmp_path, files, text, expected):
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    path = write(tmp_path, f"[multiverse]\n{text}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: {path}: multiverse.") and expected in line, line
    # an analysis of the study elsewhere does not need its files
    load_study(path, check_files=False)


@pytest.mark.parametrize(
    ("listed", "level", "expected"),
    [
        (["aods", "psa", "westin", "iuipc10"], "study", "aods-psa-westin-iuipc10"),
        (["aods", "psa", "westin", "iuipc10"], "paper", "westin-iuipc10-psa-aods"),
        (["aods", "psa", "westin", "iuipc10"], "reversed", "iuipc10-westin-psa-aods"),
        (["psa", "westin", "aods", "iuipc10"], "sharing_first", "aods-psa-westin-iuipc10"),
        (["psa", "westin"], "sharing_first", "psa-westin"),  # nothing to move
        (["psa", "westin", "aods"], ["aods", "westin", "psa"], "aods-westin-psa"),
    ],
)
def test_block_orders_by_name_or_by_ids(listed, level, expected):
    study = parse_study(raw(instruments=listed, variants=[{"name": "v", "block_order": level}]))
    assert variant_factors(study)["v"]["block_order"] == expected


def test_block_orders_of_user_instrument_files_by_id_or_path(tmp_path):
    from test_smollm2_study import write_instruments

    paths = [str(p) for p in write_instruments(tmp_path / "instruments")]
    by_id = ["two_sharing", "two_privacy", "two_prosocial"]
    by_path = [paths[2], paths[0], paths[1]]
    study = parse_study(raw(instruments=paths, variants=[
        {"name": "ids", "block_order": by_id}, {"name": "paths", "block_order": by_path},
    ]))  # fmt: skip
    factors = variant_factors(study)
    assert factors["ids"]["block_order"] == factors["paths"]["block_order"] == "-".join(by_id)
