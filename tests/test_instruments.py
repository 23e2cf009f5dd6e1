"""The instrument files are data that every study depends on: they must load, keep their
published shape, hash stably, score reverse items correctly, and reject bad files with a
message that names the field."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from vaar.cli import main
from vaar.errors import VaarError
from vaar.instruments import (
    INSTRUMENTS_DIR,
    Instrument,
    check_unique_item_ids,
    instrument_ids,
    list_instruments,
    load_instrument,
)

SHIPPED = ["aods", "buchanan_gc", "buchanan_pc", "buchanan_tp", "iuipc10", "psa", "westin"]

MINIMAL = """\
id = "mini"
title = "Minimal test instrument"
short_title = "Mini"
role = "sharing"
citation = "none"
provenance = "written for the test suite"
instructions = "Answer."
options = [
  { value = 1, label = "No" },
  { value = 2, label = "Maybe" },
  { value = 3, label = "Yes" },
]

[[items]]
id = "mini1"
text = "First statement."
factor = "MINI"

[[items]]
id = "mini2"
text = "Second statement."
reverse = true
factor = "MINI"
"""


def write(tmp_path: Path, text: str, name: str = "mini.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_shipped_file_loads_and_ids_match_file_names():
    assert instrument_ids() == SHIPPED
    instruments = list_instruments()
    assert [i.id for i in instruments] == SHIPPED
    for instrument in instruments:
        assert (INSTRUMENTS_DIR / f"{instrument.id}.toml").is_file()
        assert instrument.citation and instrument.provenance and instrument.instructions


@pytest.mark.parametrize(
    ("instrument_id", "n_items", "factors", "scale", "role"),
    [
        ("psa", 16, ["PSA"], (1, 5), "prosocial"),
        ("iuipc10", 10, ["IUIPC_CTRL", "IUIPC_AWA", "IUIPC_COLL"], (1, 7), "privacy"),
        ("buchanan_pc", 16, ["BUCH_PC"], (1, 5), "privacy"),
        ("buchanan_gc", 6, ["BUCH_GC"], (1, 5), "privacy"),
        ("buchanan_tp", 6, ["BUCH_TP"], (1, 5), "privacy"),
        ("westin", 3, ["WESTIN"], (1, 4), "privacy"),
        ("aods", 12, ["AoDS"], (1, 5), "sharing"),
    ],
)
def test_published_shape(instrument_id, n_items, factors, scale, role):
    instrument = load_instrument(instrument_id)
    assert len(instrument.items) == n_items
    assert instrument.factors == factors
    assert (instrument.scale_min, instrument.scale_max) == scale
    assert instrument.role == role


def test_published_instruments_are_not_marked_as_vaars_own():
    assert {i.id for i in list_instruments() if i.vaar_own} == {"aods"}


def test_item_ids_follow_the_naming_scheme():
    assert [i.id for i in load_instrument("psa").items] == [f"psa{n:02d}" for n in range(1, 17)]
    iuipc = load_instrument("iuipc10")
    counts = {f: sum(i.factor == f for i in iuipc.items) for f in iuipc.factors}
    assert counts == {"IUIPC_CTRL": 3, "IUIPC_AWA": 3, "IUIPC_COLL": 4}
    assert iuipc.items[0].id == "iuipc_ctrl1" and iuipc.items[-1].id == "iuipc_coll4"


def test_psa_is_verbatim_and_has_no_reverse_items():
    psa = load_instrument("psa")
    assert not any(i.reverse for i in psa.items)
    assert (
        psa.item("psa01").text == "I am pleased to help my friends/colleagues in their activities."
    )
    assert [o.label for o in psa.options] == [
        "Never/Almost never",
        "Rarely",
        "Occasionally",
        "Often",
        "Always/Almost always",
    ]


def test_aods_is_vaars_own_with_reverse_items_and_says_so():
    aods = load_instrument("aods")
    assert aods.vaar_own is True
    assert len(aods.items) >= 10
    assert 2 <= sum(i.reverse for i in aods.items) <= 3
    assert "vaar project" in aods.provenance and "NOT the instrument" in aods.provenance
    assert [aods.label_for(v) for v in (1, 5)] == ["Strongly disagree", "Strongly agree"]


def test_buchanan_keeps_its_wording_caveat():
    for instrument_id in ("buchanan_pc", "buchanan_gc", "buchanan_tp"):
        assert "verify the wording" in load_instrument(instrument_id).provenance


def test_westin_keying_makes_higher_scores_mean_more_concern():
    westin = load_instrument("westin")
    assert westin.label_for(1) == "Strongly agree"
    assert [i.reverse for i in westin.items] == [True, False, False]
    # A fundamentalist answers A = strongly agree, B and C = strongly disagree: top concern.
    assert [
        westin.score(i, raw) for i, raw in [("westin_a", 1), ("westin_b", 4), ("westin_c", 4)]
    ] == [4, 4, 4]
    assert "classification" in westin.provenance.lower()


def test_content_hash_is_stable_and_canonical():
    psa = load_instrument("psa")
    assert len(psa.content_hash) == 64
    assert psa.content_hash == load_instrument(INSTRUMENTS_DIR / "psa.toml").content_hash
    rebuilt = Instrument.model_validate(psa.model_dump())
    assert rebuilt.content_hash == psa.content_hash
    hashes = {i.content_hash for i in list_instruments()}
    assert len(hashes) == len(SHIPPED)


def test_content_hash_changes_when_a_text_changes(tmp_path):
    original = load_instrument(write(tmp_path, MINIMAL))
    edited = load_instrument(
        write(tmp_path, MINIMAL.replace("First statement.", "First statement!"), "mini2.toml")
    )
    reformatted = load_instrument(write(tmp_path, "# a comment\n" + MINIMAL, "mini3.toml"))
    assert edited.content_hash != original.content_hash
    assert reformatted.content_hash == original.content_hash


def test_edited_file_is_reloaded_not_served_from_cache(tmp_path):
    path = write(tmp_path, MINIMAL)
    before = load_instrument(path)
    path.write_text(MINIMAL.replace("First statement.", "Changed."), encoding="utf-8")
    after = load_instrument(path)
    assert after.item("mini1").text == "Changed." and before.content_hash != after.content_hash


def test_reverse_scoring(tmp_path):
    mini = load_instrument(write(tmp_path, MINIMAL))
    assert [mini.score("mini1", raw) for raw in (1, 2, 3)] == [1, 2, 3]
    assert [mini.score("mini2", raw) for raw in (1, 2, 3)] == [3, 2, 1]
    assert math.isnan(mini.score("mini2", float("nan")))
    aods = load_instrument("aods")
    reverse_id = next(i.id for i in aods.items if i.reverse)
    assert aods.score(reverse_id, 5) == 1 and aods.score(reverse_id, 4) == 2
    with pytest.raises(VaarError, match="outside the scale 1..3"):
        mini.score("mini1", 4)
    with pytest.raises(VaarError, match="no item 'nope'"):
        mini.score("nope", 1)
    with pytest.raises(VaarError, match="not a response option"):
        mini.label_for(9)


def test_user_file_by_path_loads(tmp_path):
    mini = load_instrument(str(write(tmp_path, MINIMAL)))
    assert mini.id == "mini" and mini.factors == ["MINI"] and not mini.vaar_own


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('citation = "none"\n', "", r"citation: Field required"),
        ('id = "mini1"', 'id = "Mini-1"', r"items\[0\]\.id: String should match pattern"),
        ('id = "mini2"', 'id = "mini1"', r"item ids must be unique; repeated: \['mini1'\]"),
        ("value = 3", "value = 4", r"options: values must be consecutive integers"),
        ('label = "Maybe"', 'label = "no"', r"options: labels must be unique"),
        ("reverse = true", 'reverse = true\ncolour = "red"', r"items\[1\]\.colour: unknown field"),
        ('role = "sharing"', 'role = "trust"', r"role: Input should be 'privacy', 'prosocial'"),
        ('text = "First statement."', 'text = "   "', r"items\[0\]\.text: String should have"),
        ('factor = "MINI"', 'factor = "1MINI"', r"items\[0\]\.factor: String should match"),
        ('id = "mini"', 'id = "mini test"', r"^\S*mini\.toml: id: String should match"),
    ],
)
def test_bad_file_error_names_file_and_field(tmp_path, old, new, expected):
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(VaarError, match=expected) as caught:
        load_instrument(path)
    assert str(path.resolve()) in str(caught.value)


def test_too_few_options_is_rejected(tmp_path):
    text = MINIMAL.replace(
        '  { value = 2, label = "Maybe" },\n  { value = 3, label = "Yes" },\n', ""
    )
    with pytest.raises(VaarError, match=r"options: List should have at least 2 items"):
        load_instrument(write(tmp_path, text))


def test_invalid_toml_is_a_clear_error(tmp_path):
    with pytest.raises(VaarError, match=r"mini\.toml: not valid TOML: .*line 1"):
        load_instrument(write(tmp_path, 'id = "mini\n' + MINIMAL))


def test_unknown_id_and_missing_path():
    with pytest.raises(VaarError, match=r"unknown instrument 'nope' \(known: aods, "):
        load_instrument("nope")
    with pytest.raises(VaarError, match="no such instrument file"):
        load_instrument("missing/dir/x.toml")


def test_item_ids_must_be_unique_across_instruments(tmp_path):
    clash = load_instrument(write(tmp_path, MINIMAL.replace('id = "mini1"', 'id = "psa03"')))
    with pytest.raises(VaarError, match=r"'psa03' in both 'psa' and 'mini'"):
        check_unique_item_ids([load_instrument("psa"), clash])


def test_shipped_file_whose_id_differs_from_its_name_is_rejected(tmp_path, monkeypatch):
    import vaar.instruments as instruments

    shutil.copy(INSTRUMENTS_DIR / "psa.toml", tmp_path / "prosocial.toml")
    monkeypatch.setattr(instruments, "INSTRUMENTS_DIR", tmp_path)
    with pytest.raises(VaarError, match=r"id: 'psa' does not match the file name"):
        instruments.list_instruments()


def test_shipped_files_that_share_an_item_id_are_named(tmp_path, monkeypatch):
    import vaar.instruments as instruments

    shutil.copy(INSTRUMENTS_DIR / "psa.toml", tmp_path / "psa.toml")
    write(tmp_path, MINIMAL.replace('id = "mini2"', 'id = "psa16"'))
    monkeypatch.setattr(instruments, "INSTRUMENTS_DIR", tmp_path)
    with pytest.raises(VaarError, match=r"'psa16' in both 'mini' and 'psa'"):
        instruments.list_instruments()


# --- CLI -----------------------------------------------------------------------------------


def run(*args):
    return CliRunner().invoke(main, ["instruments", *args])


def test_cli_list_shows_every_instrument_and_marks_vaars_own():
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for instrument in list_instruments():
        row = next(line for line in lines if line.startswith(instrument.id + " "))
        assert instrument.content_hash[:12] in row and str(len(instrument.items)) in row
        assert ("(vaar's own)" in row) == instrument.vaar_own


def test_cli_show_prints_everything():
    result = run("show", "iuipc10")
    assert result.exit_code == 0, result.output
    iuipc = load_instrument("iuipc10")
    for needle in [
        "Malhotra",
        "7 = Strongly agree",
        "iuipc_coll4",
        "IUIPC_AWA",
        iuipc.content_hash,
    ]:
        assert needle in result.output
    assert "vaar's own" not in result.output.splitlines()[0]


def test_cli_show_labels_aods_as_vaars_own_and_flags_reverse_items():
    result = run("show", "aods")
    assert result.exit_code == 0, result.output
    assert "(vaar's own)" in result.output.splitlines()[0]
    reverse_ids = {i.id for i in load_instrument("aods").items if i.reverse}
    flagged = {
        line.split()[0]
        for line in result.output.splitlines()
        if line.startswith("  aods") and line.split()[1] == "R"
    }
    assert flagged == reverse_ids


def test_cli_show_unknown_is_a_clean_error():
    result = run("show", "nope")
    assert result.exit_code != 0
    assert "unknown instrument 'nope'" in result.output and "psa" in result.output
    assert "Traceback" not in result.output


def test_cli_validate(tmp_path):
    good = run("validate", str(write(tmp_path, MINIMAL)))
    assert good.exit_code == 0 and "ok" in good.output and "mini" in good.output
    bad = run("validate", str(write(tmp_path, MINIMAL.replace("value = 3", "value = 5"), "b.toml")))
    assert bad.exit_code != 0 and "options: values must be consecutive" in bad.output
    assert "Traceback" not in bad.output


def test_the_roles_are_defined_once():
    """vaar.instruments.ROLES is the one list: the shipped instruments, the estimates schema
    and the human reference use no other."""
    import json
    from typing import get_args

    from vaar.alignment.reference import Reference, load_reference
    from vaar.instruments import OUTCOME_ROLE, ROLES, Instrument
    from vaar.report.document import load_schema

    assert get_args(Instrument.model_fields["role"].annotation) == ROLES
    assert {i.role for i in list_instruments()} == set(ROLES)
    schema = load_schema()["properties"]["instruments"]["items"]["properties"]["role"]
    assert tuple(schema["enum"]) == ROLES, json.dumps(schema)
    reference = load_reference()
    assert reference.outcome_role == OUTCOME_ROLE
    assert set(reference.roles) == set(ROLES) - {OUTCOME_ROLE}
    with pytest.raises(ValueError, match="roles.privcy"):
        Reference.model_validate({"roles": {"privcy": {"sign": -1}}})
