"""`vaar run` on the multiverse example end to end: collection by the simulated provider with its
planted protocol effects, every variant fitted by real lavaan, the comparison, the report.

The study is data/examples/multiverse.toml with two changes that keep lavaan quick: the three
instruments cut to their first five items (written here as instrument files) and the grid cut to
block order x history (6 variants x 4 models); 150 sessions per condition so that a planted
path of 0.5 is decided in every variant. Everything else, the models and their planted
effects included, is the example's."""

from __future__ import annotations

import functools
import json
import tempfile
import tomllib
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from vaar.cli import main
from vaar.files import package_path
from vaar.report.document import load_schema

EXAMPLE = Path(__file__).parents[1] / "data" / "examples" / "multiverse.toml"
ITEMS = 5


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (JSON escapes are TOML escapes)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"


def short_instrument(instrument_id: str, folder: Path) -> Path:
    """The shipped instrument cut to its first ITEMS items, as a user instrument file."""
    raw = tomllib.loads(package_path("instruments", "shipped", f"{instrument_id}.toml").read_text())
    raw["id"] = f"{instrument_id}_short"
    lines = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if k != "items"]
    for item in raw["items"][:ITEMS]:
        lines += ["", "[[items]]", *(f"{k} = {_toml_value(v)}" for k, v in item.items())]
    path = folder / f"{raw['id']}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def study_file(folder: Path) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    instruments = [str(short_instrument(i, folder)) for i in raw["instruments"]]
    lines = []
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        if key == "instruments":
            line = f"instruments = {_toml_value(instruments)}"
        elif key == "output_dir":
            line = f"output_dir = {_toml_value(str(folder / 'out'))}"
        elif key == "sessions_per_model":
            line = "sessions_per_model = 150"
        elif key == "item_order":
            continue
        lines.append(line)
    path = folder / "multiverse.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@functools.cache
def report() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="vaar-multiverse-"))
    result = CliRunner().invoke(main, ["run", str(study_file(folder))])
    assert result.exit_code == 0, result.output
    return folder / "out"


@functools.cache
def document() -> dict:
    return json.loads((report() / "estimates.json").read_text(encoding="utf-8"))


def verdicts() -> dict[str, dict]:
    return {v["model"]: v for v in document()["multiverse"]["verdicts"]}


@pytest.mark.slow
def test_the_grid_is_analysed_per_model_and_variant():
    doc = document()
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    assert doc["schema_version"] == "1.1"
    mv = doc["multiverse"]
    assert len(mv["variants"]) == 6
    assert set(mv["varying"]) == {"block_order", "history"}
    models = {"sim-stable", "sim-order", "sim-reset", "sim-mixed"}
    assert {(r["model"], r["variant"]) for r in mv["vaar"]} == {
        (m, v) for m in models for v in mv["variants"]
    }
    assert all(r["vaar_soft"] is not None for r in mv["vaar"])
    for name in ("multiverse_vaar.csv", "multiverse_flips.csv", "multiverse_verdicts.csv"):
        assert (report() / name).stat().st_size > 0


@pytest.mark.slow
def test_the_stable_models_are_called_stable():
    """No planted protocol effect: no path flips sign in any variant. (At 150 sessions a
    variant may still leave a path of 0.5 undecided; the verdict then says so.)"""
    for model in ("sim-stable", "sim-mixed"):  # sim-mixed: mixed paths, in every protocol
        row = verdicts()[model]
        assert row["stable"], row["verdict"]
        assert row["verdict"].startswith("stable across all 6") or (
            "(no path flips sign)" in row["verdict"]
        )
        assert {r["model"]: r for r in document()["multiverse"]["stability"]}[model][
            "max_flip_share"
        ] == 0


@pytest.mark.slow
def test_the_planted_order_effect_is_found():
    mv = document()["multiverse"]
    row = verdicts()["sim-order"]
    assert not row["stable"]
    assert "flips when block order is" in row["verdict"]
    order = {r["model"]: r for r in mv["order"]}
    assert order["sim-order"]["paths_differ"] is True
    assert order["sim-stable"]["paths_differ"] is False
    flips = {(r["model"], r["path"].split(" ~ ")[1]): r for r in mv["flips"]}
    privacy = next(v for (m, rhs), v in flips.items() if m == "sim-order" and "PSA" not in rhs)
    assert privacy["flip_share"] == pytest.approx(2 / 6)  # the paper's order, both histories


@pytest.mark.slow
def test_the_planted_history_effect_is_found():
    row = verdicts()["sim-reset"]
    assert not row["stable"]
    assert "flips in" in row["verdict"] and "history = instrument" in row["verdict"]


@pytest.mark.slow
def test_the_report_shows_the_heat_map_and_the_verdicts():
    page = (report() / "index.html").read_text(encoding="utf-8")
    assert '<section id="multiverse">' in page
    assert 'id="multiverse-heat-map"' in page and "<svg" in page
    assert 'aria-label="VAAR soft per model and protocol variant"' in page
    for verdict in verdicts().values():
        assert verdict["verdict"] in page.replace("&#39;", "'")
    assert "Does block order change measurement?" in page
