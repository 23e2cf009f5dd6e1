"""A mini-study against the REAL SmolLM2-135M served by llama-cpp-python on loopback.

Kept small (one session of the 3-item Westin index each; grammar-constrained JSON costs
llama-cpp-python seconds of CPU per reply, and the box is shared): a
JSON-schema run, where every answer must parse, and a free-text run, where SmolLM2 often
does not answer with a number and the pipeline must record that honestly and carry on.
"""

import asyncio
import json
import sqlite3

import pytest

from vaar.collection import collect
from vaar.config import parse_study
from vaar.data import long_table, wide_table

pytestmark = pytest.mark.llm


def mini_study(tmp_path, url, structured, instrument, sessions):
    return parse_study(
        {
            "name": "smol",
            "seed": 1,
            "sessions_per_model": sessions,
            "instruments": [instrument],
            "output_dir": str(tmp_path / "out"),
            "session": {"history": {"mode": "last_k", "last_k": 1}, "max_reasks": 1},
            "models": [
                {
                    "name": "smollm2",
                    "provider": "openai",
                    "model": "smollm2-135m",
                    "base_url": url,
                    "concurrency": 1,  # the server answers one request at a time anyway
                    "params": {
                        "temperature": 0.8,
                        "max_tokens": 16,
                        "structured": structured,
                        "json_format": "json_object",  # llama-cpp-python's form
                        "timeout": 120,
                        "max_retries": 2,
                    },
                }
            ],
        }
    )


@pytest.mark.parametrize(
    "structured, instrument, sessions, n_items",
    [(True, "westin", 1, 3), (False, "westin", 1, 3)],
    ids=["json-schema", "free-text"],
)
def test_smollm2_mini_study(tmp_path, smollm2_server, structured, instrument, sessions, n_items):
    s = mini_study(tmp_path, smollm2_server, structured, instrument, sessions)
    summary = asyncio.run(collect(s, progress=False))
    assert summary.complete, summary.lines()
    long = long_table(summary.store_path)
    assert len(long) == sessions * n_items and not long.duplicated(["session", "item"]).any()
    assert set(long["status"]) <= {"ok", "invalid", "refused"}
    ok = long["status"] == "ok"
    assert long.loc[ok, "value"].between(1, 4).all()  # Westin's 4-point scale
    assert long.loc[~ok, "value"].isna().all() and (long["raw"].str.len() > 0).all()
    if structured:  # a JSON-schema response format makes every answer parse
        assert ok.all(), long.loc[~ok, "raw"].tolist()
    # whatever the model answers (often the same number, or none), the tables hold together
    wide = wide_table(long)
    assert len(wide) == sessions and wide.shape[1] == 2 + n_items
    con = sqlite3.connect(summary.store_path)
    metas = [json.loads(m) for (m,) in con.execute("SELECT meta FROM turns")]
    assert all(m["usage"]["completion_tokens"] > 0 for m in metas)
    assert all(m["finish_reason"] in ("stop", "length") for m in metas)
    assert summary.models["smollm2"]["prompt_tokens"] > 0
