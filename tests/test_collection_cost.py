"""Token accounting, price tables, the dry-run estimate and --max-cost."""

import asyncio
import re
import sqlite3

import pytest
from click.testing import CliRunner

from vaar.cli import main
from vaar.collection import collect
from vaar.collection.cost import load_prices
from vaar.config import load_study
from vaar.errors import ConfigError

STUDY = """
name = "cost"
seed = 4
sessions_per_model = {sessions}
instruments = ["psa", "aods"]
output_dir = "{out}"

[session.history]
mode = "{mode}"

[[models]]
name = "sim"
provider = "simulated"
concurrency = 2
"""
PRICES = """
[models.sim]
input = 2.0
output = 8.0
"""


def files(tmp_path, sessions=4, mode="session"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(sessions=sessions, out=tmp_path / "out", mode=mode))
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    return study, prices


def test_dry_run_estimates_calls_tokens_and_cost_without_asking(tmp_path):
    study, prices = files(tmp_path)
    result = CliRunner().invoke(main, ["collect", str(study), "--dry-run", "--prices", str(prices)])
    assert result.exit_code == 0, result.output
    m = re.search(
        r"sim: 4 sessions, 112 calls, ~([\d,]+) prompt \+ ~([\d,]+) completion", result.output
    )
    assert m and "total: plain $" in result.output
    assert not (tmp_path / "out").exists()  # nothing asked, nothing stored
    estimated = int(m.group(1).replace(",", ""))
    # the estimate grows with the history, like the real run
    study_r, _ = files(tmp_path / "r", mode="instrument")
    result_r = CliRunner().invoke(main, ["collect", str(study_r), "--dry-run"])
    m_r = re.search(r"~([\d,]+) prompt", result_r.output)
    assert int(m_r.group(1).replace(",", "")) < estimated
    assert "no price" in result_r.output
    # and is close to what a real run counts
    summary = asyncio.run(collect(load_study(study), progress=False))
    real = summary.models["sim"]["prompt_tokens"]
    assert 0.5 < estimated / real < 2, (estimated, real)


def test_tokens_and_cost_are_accounted_per_model(tmp_path):
    study, prices = files(tmp_path)
    s = load_study(study)
    summary = asyncio.run(collect(s, progress=False, prices=load_prices(prices)))
    m = summary.models["sim"]
    expected = (m["prompt_tokens"] * 2.0 + m["completion_tokens"] * 8.0) / 1e6
    assert m["cost"] == pytest.approx(expected) and m["cost"] > 0
    con = sqlite3.connect(summary.store_path)
    assert con.execute("SELECT SUM(cost) FROM turns").fetchone()[0] == pytest.approx(expected)


def test_max_cost_stops_cleanly_and_resumes(tmp_path):
    study, prices = files(tmp_path, sessions=6)
    args = ["collect", str(study), "--prices", str(prices), "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--max-cost", "0.02"])
    assert result.exit_code == 3, result.output
    assert "stopped: max cost 0.02 reached" in result.output
    assert "not finished" in result.output
    con = sqlite3.connect(tmp_path / "out" / "collection.sqlite")
    spent = con.execute("SELECT SUM(cost) FROM turns").fetchone()[0]
    assert 0.02 <= spent < 0.03  # stops after the turns in flight, not long after
    result = CliRunner().invoke(main, [*args, "--max-cost", "1"])
    assert result.exit_code == 0, result.output


def test_max_cost_needs_prices_and_prices_are_validated(tmp_path):
    study, prices = files(tmp_path)
    result = CliRunner().invoke(main, ["collect", str(study), "--max-cost", "1"])
    assert result.exit_code == 2 and "needs a price table" in result.output
    prices.write_text("[models.sim]\ninput = -1\n")
    with pytest.raises(ConfigError, match=r"models\.sim\.input: .*greater than or equal to 0"):
        load_prices(prices)
    with pytest.raises(ConfigError, match=r"models\.sim\.output: Field required"):
        load_prices(prices)
