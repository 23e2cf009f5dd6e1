"""Answer distributions from token log-probabilities: the pure function on many shapes, a run
against the fake LLM (stored per turn, exported with the transcripts), and the real SmolLM2 on
llama-cpp-python's server."""

import asyncio
import json
import math
import sqlite3

import pytest

from tests.fakes.fake_llm import FakeLLM, token_logprobs
from vaar.collection import collect
from vaar.collection.logprobs import answer_distribution, for_options
from vaar.collection.store import transcripts
from vaar.config import parse_study


def tok(token, logprob, *alts):
    return {"token": token, "logprob": logprob,
            "top_logprobs": [{"token": t, "logprob": lp} for t, lp in alts]}  # fmt: skip


L = math.log


@pytest.mark.parametrize(
    "content, probs, position",
    [
        ([tok("3", L(0.5), ("3", L(0.5)), ("4", L(0.5)))], {"3": 0.5, "4": 0.5}, 0),
        ([tok("I", L(0.9)), tok(" 4", L(0.8), (" 4", L(0.8)), ("5", L(0.2)))],
         {"4": 0.8, "5": 0.2}, 1),
        ([tok('{"answer": ', 0.0), tok("2", L(0.6), ("2", L(0.6)), ("x", L(0.4)))],
         {"2": 1.0}, 1),
        ([tok("<think>5", 0.0), tok("</think>", 0.0), tok("1", 0.0, ("1", 0.0))], {"1": 1.0}, 2),
        ([tok("7", L(0.3))], {"7": 1.0}, 0),  # no alternatives: the token itself
        ([tok("3", L(0.4), ("3", L(0.4)), (" 3", L(0.4)))], {"3": 1.0}, 0),  # merged
    ],
)  # fmt: skip
def test_answer_distribution(content, probs, position):
    d = answer_distribution(content)
    assert d["probs"] == pytest.approx(probs) and d["position"] == position
    p = {int(v): x for v, x in d["probs"].items()}
    assert d["expected"] == pytest.approx(sum(v * x for v, x in p.items()), abs=1e-5)
    entropy = -sum(x * math.log(x) for x in p.values() if x > 0)
    assert d["entropy"] == pytest.approx(entropy, abs=1e-5)
    assert 0 < d["mass"] <= 1


@pytest.mark.parametrize(
    "content",
    [None, [], [tok("hello", 0.0)], [tok("3", float("-inf"), ("3", float("-inf")))],
     [tok("1234", 0.0)]],
)  # fmt: skip
def test_no_number_no_distribution(content):
    assert answer_distribution(content) is None


def test_fake_logprobs_put_the_answer_first():
    d = answer_distribution(token_logprobs("I'd say 4", 5))
    assert max(d["probs"], key=d["probs"].get) == "4" and d["mass"] == pytest.approx(0.94)


@pytest.mark.parametrize(
    "tokens, values, probs",
    [
        ("4", [1, 2, 3, 4], {"4": 0.7 / 0.82, "3": 0.12 / 0.82}),  # 5 is off the scale
        ("3", [1, 2, 3, 4, 5], {"2": 0.12 / 0.94, "3": 0.7 / 0.94, "4": 0.12 / 0.94}),
        ("9", [1, 2, 3], None),  # nothing on the scale
        ("0", [0, 1], {"0": 0.7 / 0.82, "1": 0.12 / 0.82}),
    ],
)
def test_for_options(tokens, values, probs):
    d = for_options(answer_distribution(token_logprobs(tokens, 5)), values)
    if probs is None:
        assert d is None
        return
    assert d["probs"] == pytest.approx(probs, abs=1e-5)
    assert d["mass"] == pytest.approx(sum(0.7 if v == int(tokens) else 0.12
                                          for v in map(int, probs)), abs=1e-5)  # fmt: skip


def study(tmp_path, url, params, structured=False, per_turn=1):
    return parse_study(
        {
            "name": "lp",
            "seed": 2,
            "sessions_per_model": 2,
            "instruments": ["westin"],
            "output_dir": str(tmp_path / "out"),
            "session": {"max_reasks": 1, "items_per_turn": per_turn},
            "models": [
                {
                    "name": "m",
                    "provider": "openai",
                    "model": "smollm2-135m",
                    "base_url": url,
                    "concurrency": 1,
                    "params": {"max_retries": 1, "structured": structured, **params},
                }
            ],
        }
    )


def distributions(path):
    con = sqlite3.connect(path)
    metas = [json.loads(m) for (m,) in con.execute("SELECT meta FROM turns ORDER BY rowid")]
    values = dict(con.execute("SELECT session || item, value FROM answers"))
    con.close()
    return metas, values


def test_distributions_are_stored_per_turn_and_exported(tmp_path):
    with FakeLLM() as fake:
        summary = asyncio.run(
            collect(study(tmp_path, fake.base_url, {"logprobs": 5}, True), progress=False)
        )
        bodies = list(fake.bodies)
    assert all(b["logprobs"] is True and b["top_logprobs"] == 5 for b in bodies)
    metas, _ = distributions(summary.store_path)
    assert len(metas) == 2 * 3
    for meta in metas:
        d = meta["answer_distribution"]
        assert set(d["probs"]) <= {"1", "2", "3", "4"}  # Westin's options only
        assert 0 < d["entropy"] < math.log(4)
    con = sqlite3.connect(summary.store_path)
    labels_only = con.execute("SELECT COUNT(*) FROM answers WHERE raw NOT GLOB '*[0-9]*'")
    assert labels_only.fetchone()[0] == 0
    exported = [t["meta"]["answer_distribution"] for s in transcripts(summary.store_path)
                for t in s["turns"]]  # fmt: skip
    assert exported == [m["answer_distribution"] for m in metas]


def test_a_block_of_items_gets_no_distribution(tmp_path):
    with FakeLLM() as fake:
        s = study(tmp_path, fake.base_url, {"logprobs": 5}, per_turn=3)
        summary = asyncio.run(collect(s, progress=False))
    metas, _ = distributions(summary.store_path)
    assert metas and all(m["answer_distribution"] is None for m in metas)


def test_no_distribution_unless_asked(tmp_path):
    with FakeLLM() as fake:
        summary = asyncio.run(collect(study(tmp_path, fake.base_url, {}), progress=False))
        bodies = list(fake.bodies)
    assert not any("logprobs" in b for b in bodies)
    metas, _ = distributions(summary.store_path)
    assert all("answer_distribution" not in m for m in metas)


@pytest.mark.llm
def test_smollm2_answer_distributions(tmp_path, smollm2_server):
    params = {"logprobs": 5, "max_tokens": 8, "temperature": 0.0, "json_format": "json_object"}
    s = study(tmp_path, smollm2_server, params, structured=True)
    summary = asyncio.run(collect(s, progress=False))
    assert summary.complete, summary.lines()
    metas, values = distributions(summary.store_path)
    found = [m["answer_distribution"] for m in metas if m.get("answer_distribution")]
    assert found, metas  # the JSON answer's number carries a distribution
    for d in found:
        assert abs(sum(d["probs"].values()) - 1) < 1e-4 and 0 < d["mass"] <= 1
        assert 0 <= d["entropy"] <= math.log(len(d["probs"])) + 1e-6
        assert min(map(int, d["probs"])) <= d["expected"] <= max(map(int, d["probs"]))
    ok = [v for v in values.values() if v is not None]
    assert ok and all(1 <= v <= 4 for v in ok)
