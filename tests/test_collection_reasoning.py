"""Reasoning models: their parameters per provider (OpenAI reasoning_effort with
max_completion_tokens and no sampling parameters; Anthropic extended thinking with its budget),
refused combinations as one-line config errors, reasoning tokens recorded, and the answer
parsed from the final text only (never from the thoughts), against the loopback fake LLM."""

import asyncio
import sqlite3

import pytest
from click.testing import CliRunner

from tests.fakes.fake_llm import FakeLLM
from vaar.cli import main
from vaar.collection import collect
from vaar.collection.providers.openai import final_text
from vaar.config import parse_study

# thoughts full of numbers that are not the answer
THOUGHTS = "Options 1 to 5. Maybe 1? 2. Or 5... I'd say 4. Hmm, no: 3."


def study(tmp_path, provider, url, params, out="out"):
    return parse_study(
        {
            "name": "reason",
            "seed": 5,
            "sessions_per_model": 2,
            "instruments": ["westin", "psa"],
            "output_dir": str(tmp_path / out),
            "models": [
                {
                    "name": "m",
                    "provider": provider,
                    "model": "fake",
                    "base_url": url if provider == "openai" else url.removesuffix("/v1"),
                    "params": {"max_retries": 1, **params},
                }
            ],
        }
    )


def stored(path):
    con = sqlite3.connect(path)
    answers = con.execute(
        "SELECT session, item, value, status FROM answers ORDER BY session, item"
    ).fetchall()
    turns = con.execute("SELECT completion_tokens, reasoning_tokens FROM turns").fetchall()
    con.close()
    return answers, turns


def run(tmp_path, provider, params, out, **fake):
    with FakeLLM(**fake) as server:
        s = study(tmp_path, provider, server.base_url, params, out)
        summary = asyncio.run(collect(s, progress=False))
        bodies = list(server.bodies)
    assert summary.complete, summary.lines()
    return stored(summary.store_path), bodies


def test_openai_reasoning_effort_sends_max_completion_tokens_and_counts_reasoning(tmp_path):
    (plain, _), _ = run(tmp_path, "openai", {}, "plain")
    params = {"reasoning_effort": "low", "max_tokens": 2000}
    (answers, turns), bodies = run(tmp_path, "openai", params, "reasoning")
    assert answers == plain
    for body in bodies:
        assert body["reasoning_effort"] == "low" and body["max_completion_tokens"] == 2000
        assert not {"max_tokens", "temperature", "top_p"} & set(body)
    assert all(0 < r < c for c, r in turns)


def test_inline_thoughts_are_cut_off_before_parsing(tmp_path):
    (plain, _), _ = run(tmp_path, "openai", {}, "plain")
    (answers, turns), _ = run(tmp_path, "openai", {}, "think", think=THOUGHTS)
    assert answers == plain  # the numbers in the thoughts never became answers
    assert all(r == len(THOUGHTS) // 4 for _, r in turns)


def test_anthropic_thinking_budget_is_sent_and_the_answer_read_from_text(tmp_path):
    (plain, _), _ = run(tmp_path, "anthropic", {}, "plain")
    params = {"thinking_budget": 1024, "max_tokens": 1600}
    (answers, turns), bodies = run(tmp_path, "anthropic", params, "thinking")
    assert answers == plain
    assert all(b["thinking"] == {"type": "enabled", "budget_tokens": 1024} for b in bodies)
    assert all(not {"temperature", "top_k"} & set(b) for b in bodies)
    assert all(0 < r < c for c, r in turns)


@pytest.mark.parametrize(
    "text, answer, thoughts",
    [
        ("3", "3", ""),
        ("<think>maybe 2</think>4", "4", "maybe 2"),
        ("<think>a</think>\n<think>b</think>\n 5 ", "5", "a\nb"),
        ("no thoughts </think>", "", "no thoughts"),
        ("I think 2 </think> 4 </think> 5", "5", "I think 2  4"),
    ],
)
def test_final_text(text, answer, thoughts):
    assert final_text(text) == (answer, thoughts)


BAD = [
    ("openai", {"reasoning_effort": "low", "max_tokens": 2000, "temperature": 0.7}, "temperature"),
    ("openai", {"reasoning_effort": "high", "max_tokens": 2000, "top_p": 0.9}, "top_p"),
    ("openai", {"reasoning_effort": "low"}, "max_tokens: 64"),
    ("openai", {"reasoning_effort": "extreme", "max_tokens": 2000}, "reasoning_effort"),
    ("anthropic", {"thinking_budget": 2048, "max_tokens": 2048}, "at least 2049"),
    ("anthropic", {"thinking_budget": 512, "max_tokens": 4000}, "thinking_budget"),
    ("anthropic", {"thinking_budget": 1024, "max_tokens": 4000, "temperature": 1}, "temperature"),
    ("anthropic", {"thinking_budget": 1024, "max_tokens": 4000, "top_k": 5}, "top_k"),
    ("anthropic", {"reasoning_effort": "low"}, "unknown parameter"),
    ("openai", {"thinking_budget": 1024}, "unknown parameter"),
]


@pytest.mark.parametrize("provider, params, named", BAD)
def test_parameters_a_reasoning_model_rejects_are_one_line_errors(
    tmp_path, provider, params, named
):
    lines = [f"{k} = {v!r}".replace("'", '"') for k, v in params.items()]
    path = tmp_path / "study.toml"
    path.write_text(
        'name = "r"\nseed = 1\nsessions_per_model = 1\ninstruments = ["westin"]\n'
        f'output_dir = "{tmp_path / "out"}"\n[[models]]\nname = "m"\n'
        f'provider = "{provider}"\n[models.params]\n' + "\n".join(lines) + "\n"
    )
    result = CliRunner().invoke(main, ["collect", str(path), "--dry-run"])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and line.startswith("error:") and "Traceback" not in line
    assert "models[0].params" in line and named in line, line
