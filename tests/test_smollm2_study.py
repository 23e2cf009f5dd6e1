"""The real multi-model study offline, small: data/examples/smollm2.toml (SmolLM2-135M served by
llama-cpp-python on loopback, three sampling conditions as the groups) run end to end through
`vaar run` on three 2-item questionnaires, one turn per session. Greedy decoding gives the same
answers in every session, a degenerate group: the study still gets its report, with that
group explained and the others analysed."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from vaar.cli import main

STUDY = Path(__file__).parent.parent / "data" / "examples" / "smollm2.toml"
STATEMENTS = {  # role -> (factor, two statements)
    "privacy": ("PC", ("I worry about how apps use my personal data.",
                       "Companies collect too much information about me.")),
    "prosocial": ("PS", ("I like to help people in need.", "Helping others makes me happy.")),
    "sharing": ("SH", ("I would share my health data for research.",
                       "I am willing to share my location with a city planner.")),
}  # fmt: skip
OPTIONS = ", ".join(
    f'{{ value = {v}, label = "{label}" }}'
    for v, label in enumerate(["Disagree", "Somewhat disagree", "Neutral", "Somewhat agree",
                               "Agree"], start=1)
)  # fmt: skip


def write_instruments(folder: Path) -> list[Path]:
    """Three 2-item questionnaires (privacy, prosocial, sharing) as user instrument files."""
    folder.mkdir(parents=True)
    paths = []
    for role, (factor, statements) in STATEMENTS.items():
        items = "".join(
            f'[[items]]\nid = "{factor.lower()}{k}"\ntext = "{text}"\nfactor = "{factor}"\n'
            for k, text in enumerate(statements, start=1)
        )
        path = folder / f"two_{role}.toml"
        path.write_text(
            f'id = "two_{role}"\ntitle = "Two {role} items"\nshort_title = "{factor}"\n'
            f'role = "{role}"\nvaar_own = true\ncitation = "Written for vaar\'s tests."\n'
            f'provenance = "Test items."\ninstructions = "Say how much you agree."\n'
            f"options = [{OPTIONS}]\n\n{items}",
            encoding="utf-8",
        )
        paths.append(path)
    return paths


def small_version(text: str, base_url: str, instruments: list, out: Path) -> str:
    """The example study with the test's server, instruments and size (each change checked)."""
    names = ", ".join(json.dumps(str(p)) for p in instruments)
    changes = [
        (r"http://127\.0\.0\.1:8013/v1", base_url),
        (r"sessions_per_model = \d+", "sessions_per_model = 8"),
        (r"instruments = \[[^\]]*\]", f"instruments = [{names}]"),
        (r'output_dir = "[^"]*"', f"output_dir = {json.dumps(str(out))}"),
        (r"items_per_turn = \d+", "items_per_turn = 6"),  # one turn per session
        (r"randomize_items = true", "randomize_items = false"),
        (r"levels = \[[^\]]*\]", 'levels = ["configural", "metric"]'),
    ]
    for pattern, new in changes:
        text, n = re.subn(pattern, new.replace("\\", "\\\\"), text)
        assert n, pattern
    return text


def test_smollm2_study_end_to_end(tmp_path, smollm2_server):
    paths = write_instruments(tmp_path / "instruments")
    study = tmp_path / "smollm2.toml"
    out = tmp_path / "report"
    study.write_text(small_version(STUDY.read_text(encoding="utf-8"), smollm2_server, paths, out))
    result = CliRunner().invoke(main, ["run", str(study), "--no-progress"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "estimates.json").read_text(encoding="utf-8"))
    html = (out / "index.html").read_text(encoding="utf-8")
    assert doc["study"]["models"] == ["greedy", "warm", "hot"]
    excluded = {e["group"]: e["reason"] for e in doc["diagnostics"]["excluded_groups"]}
    fitted = {r["group"] for r in doc["structural"]}
    assert "greedy" in excluded and "greedy" not in fitted  # one answer per item, every session
    assert "no value–action variation to estimate" in excluded["greedy"]
    assert fitted and fitted.isdisjoint(excluded)  # what carries information is analysed
    assert fitted | set(excluded) == {"greedy", "warm", "hot"}
    scores = {r["model"]: r for r in doc["alignment"]["scores"]}
    assert set(scores) == {"greedy", "warm", "hot"}
    assert all(scores[m]["vaar_soft"] is not None for m in fitted)
    not_estimable = {r["model"]: r["reason"] for r in doc["alignment"]["not_estimable"]}
    assert set(not_estimable) == set(excluded)
    assert all(excluded[m] in not_estimable[m] for m in excluded)
    assert 'id="excluded-models"' in html
    profiles = {r["model"] for r in doc["profiles"]["table"]}
    assert profiles == {"greedy", "warm", "hot"}  # excluded models keep their profiles
