"""A multiverse grid against a real LLM offline: SmolLM2-135M (llama-cpp-python on loopback,
the session-scoped server of tests/fakes/fixtures.py that test_smollm2_study.py shares) under
three protocol variants (the study's block order, reversed, history reset per instrument) on
three 2-item questionnaires, two items a turn. The collection side: one condition per variant,
each with its own sessions and answers; a `vaar collect` killed mid-run resumes without asking
a stored turn again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from fakes.fixtures import stored_turns
from test_smollm2_study import write_instruments

from vaar.cli import main
from vaar.collection.store import transcripts
from vaar.config import load_study
from vaar.data import long_table, wide_table
from vaar.multiverse import variant_factors

SESSIONS = 3


def grid_study(folder: Path, base_url: str) -> Path:
    paths = write_instruments(folder / "instruments")
    names = ", ".join(json.dumps(str(p)) for p in paths)
    study = folder / "grid.toml"
    study.write_text(
        f"""
name = "smollm2-grid"
seed = 20261202
sessions_per_model = {SESSIONS}
instruments = [{names}]
output_dir = {json.dumps(str(folder / "out"))}

[session]
items_per_turn = 2
randomize_items = false
max_reasks = 0

[[variants]]
name = "base"

[[variants]]
name = "reversed"
block_order = "reversed"

[[variants]]
name = "reset"
history = "instrument"

[[models]]
name = "warm"
provider = "openai"
model = "smollm2-135m"
base_url = "{base_url}"
concurrency = 1

[models.params]
temperature = 0.8
max_tokens = 24
structured = true
json_format = "json_object"
timeout = 120
""",
        encoding="utf-8",
    )
    return study


def test_smollm2_grid_collects_one_condition_per_variant_and_resumes(tmp_path, smollm2_server):
    study = grid_study(tmp_path, smollm2_server)
    store = tmp_path / "out" / "collection.sqlite"
    total = 3 * SESSIONS * 3  # variants x sessions x turns (three instruments, two items each)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from vaar.cli import main; main()", "collect", str(study),
         "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    while proc.poll() is None and len(stored_turns(store)) < total // 3:
        time.sleep(0.05)
    assert proc.poll() is None, (
        f"the collection ended before it could be killed: {proc.communicate()}"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    before = stored_turns(store)
    assert 0 < len(before) < total

    result = CliRunner().invoke(main, ["collect", str(study), "--no-progress"])
    assert result.exit_code == 0, result.output
    after = stored_turns(store)
    assert len(after) == total
    assert all(after[k] == f for k, f in before.items())  # a stored turn was not asked again
    for variant in ("base", "reversed", "reset"):
        assert f"warm/{variant}: {SESSIONS}/{SESSIONS} sessions done" in result.output

    long = long_table(store)
    wide = wide_table(long)
    assert list(wide.columns[:3]) == ["model", "variant", "session"]
    assert wide.groupby("variant").size().to_dict() == {
        v: SESSIONS for v in ("base", "reversed", "reset")
    }
    assert (long["status"] == "ok").mean() > 0.5, long["raw"].head(10).tolist()  # answers stored
    factors = variant_factors(load_study(study))
    assert factors["reversed"]["block_order"] == "two_sharing-two_prosocial-two_privacy"
    assert factors["reset"]["history"] == "instrument"
    # the variants' protocols reached the server: the order asked, and the history sent
    by = {(r["variant"], r["index"]): r for r in transcripts(store)}
    assert [t["instrument"] for t in by[("reversed", 0)]["turns"]] == [
        "two_sharing", "two_prosocial", "two_privacy",
    ]  # fmt: skip
    assert [t["context"] for t in by[("reset", 0)]["turns"]] == [[], [], []]
    assert [t["context"] for t in by[("base", 0)]["turns"]] == [[], [0], [0, 1]]
