"""Prompt caching of the growing history and token accounting by kind, against the loopback
fake LLM (which caches prefixes as the two APIs document); the price table's cached, cache-write
and batch prices; the four-way dry-run estimate; stores written before these columns existed."""

import asyncio
import json
import re
import sqlite3

import pytest
from click.testing import CliRunner

from tests.fakes.fake_llm import CACHE_MIN_TOKENS, FakeLLM, plain
from vaar.cli import main
from vaar.collection import collect
from vaar.collection.cost import Usage, cost_of, load_prices
from vaar.collection.providers.anthropic import MAX_BREAKPOINTS, breakpoints
from vaar.collection.store import Store, estimate_tokens, transcripts
from vaar.config import parse_study

ANTHROPIC_PRICE = {"input": 3.0, "output": 15.0, "cached_input": 0.3, "cache_write": 3.75}


def study(tmp_path, provider, url, sessions=2, history="session", params=None):
    base = url if provider == "openai" else url.removesuffix("/v1")
    return parse_study(
        {
            "name": "cache",
            "seed": 3,
            "sessions_per_model": sessions,
            "instruments": ["psa", "aods"],
            "output_dir": str(tmp_path / "out"),
            "session": {
                "history": {"mode": history, **({"last_k": 2} if history == "last_k" else {})}
            },
            "models": [
                {
                    "name": "m",
                    "provider": provider,
                    "model": "fake",
                    "base_url": base,
                    "concurrency": 2,
                    "params": {"max_retries": 1, **(params or {})},
                }
            ],
        }
    )


def turns(path):
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    return [dict(r) for r in con.execute("SELECT * FROM turns ORDER BY session, turn")]


# -- where the breakpoints go -----------------------------------------------------------------


def conversation(n_turns, chars=400, system_chars=40):
    system = [{"role": "system", "content": "s" * system_chars}]
    messages = []
    for i in range(n_turns):
        messages.append({"role": "user", "content": f"q{i}" + "x" * chars})
        if i < n_turns - 1:
            messages.append({"role": "assistant", "content": "3"})
    return system, messages


@pytest.mark.parametrize("n_turns", range(1, 40, 3))
@pytest.mark.parametrize("chars", [10, 400, 4000])
@pytest.mark.parametrize("system_chars", [40, 5000])
@pytest.mark.parametrize("minimum", [1024, 2048])
def test_breakpoints_close_cacheable_prefixes_only(n_turns, chars, system_chars, minimum):
    system, messages = conversation(n_turns, chars, system_chars)
    marks = breakpoints(system, messages, minimum)
    assert len(marks) <= MAX_BREAKPOINTS and len(set(marks)) == len(marks)
    for i in marks:  # every breakpoint closes a prefix at least the minimum long
        prefix = system if i == -1 else system + messages[: i + 1]
        assert estimate_tokens(prefix) >= minimum
    total = estimate_tokens(system + messages)
    assert (len(messages) - 1 in marks) == (total >= minimum)  # the prompt's end: written
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if len(users) > 1 and estimate_tokens(system + messages[: users[-2] + 1]) >= minimum:
        assert users[-2] in marks  # the previous request's end: read
    assert (-1 in marks) == (estimate_tokens(system) >= minimum)


# -- Anthropic: explicit breakpoints ----------------------------------------------------------


def test_anthropic_history_is_read_from_the_cache_each_turn(tmp_path):
    with FakeLLM() as fake:
        s = study(tmp_path, "anthropic", fake.base_url)
        summary = asyncio.run(collect(s, progress=False, prices={"m": ANTHROPIC_PRICE}))
        bodies = list(fake.bodies)
    assert summary.complete, summary.lines()
    for body in bodies:
        marks = [m for m in body["messages"] if isinstance(m["content"], list)]
        assert len(marks) <= MAX_BREAKPOINTS
        for m in marks:
            assert m["content"][0]["cache_control"] == {"type": "ephemeral"}
    rows = turns(summary.store_path)
    by_session: dict[str, list] = {}
    for row in rows:
        by_session.setdefault(row["session"], []).append(row)
        assert row["cache_read_tokens"] + row["cache_write_tokens"] <= row["prompt_tokens"]
    for session_rows in by_session.values():
        sizes = [r["prompt_tokens"] for r in session_rows]
        assert sizes == sorted(sizes)  # the history grows
        for prev, row in zip(session_rows, session_rows[1:], strict=False):
            if prev["prompt_tokens"] >= CACHE_MIN_TOKENS:  # the last prompt was cached...
                assert row["cache_read_tokens"] == prev["prompt_tokens"]  # ...and is read now
                assert row["cache_write_tokens"] == row["prompt_tokens"] - prev["prompt_tokens"]
            if row["prompt_tokens"] < CACHE_MIN_TOKENS:
                assert row["cache_read_tokens"] == row["cache_write_tokens"] == 0
    read = sum(r["cache_read_tokens"] for r in rows)
    m = summary.models["m"]
    assert m["cache_read_tokens"] == read > 0.5 * m["prompt_tokens"]  # most of the history
    assert m["cache_write_tokens"] == sum(r["cache_write_tokens"] for r in rows)
    # the cost is priced by kind, and caching made it far cheaper than plain
    usage = Usage(
        m["prompt_tokens"], m["completion_tokens"], m["cache_read_tokens"], m["cache_write_tokens"]
    )
    assert m["cost"] == pytest.approx(cost_of(ANTHROPIC_PRICE, usage))
    plain_cost = cost_of(ANTHROPIC_PRICE, Usage(m["prompt_tokens"], m["completion_tokens"]))
    assert m["cost"] < 0.6 * plain_cost
    # exported transcripts carry the kinds too
    first = next(transcripts(summary.store_path))["turns"][-1]
    assert first["cache_read_tokens"] > 0 and "reasoning_tokens" in first


@pytest.mark.parametrize("ttl, control", [("5m", {"type": "ephemeral"}),
                                          ("1h", {"type": "ephemeral", "ttl": "1h"})])  # fmt: skip
def test_anthropic_cache_ttl(tmp_path, ttl, control):
    with FakeLLM() as fake:
        s = study(tmp_path, "anthropic", fake.base_url, sessions=1, params={"cache_ttl": ttl})
        summary = asyncio.run(collect(s, progress=False))
        bodies = list(fake.bodies)
    marks = [b["cache_control"] for x in bodies for m in x["messages"]
             if isinstance(m["content"], list) for b in m["content"]]  # fmt: skip
    assert marks and all(c == control for c in marks)
    assert summary.models["m"]["cache_read_tokens"] > 0


def test_anthropic_prompt_cache_can_be_turned_off(tmp_path):
    with FakeLLM() as fake:
        s = study(tmp_path, "anthropic", fake.base_url, sessions=1, params={"prompt_cache": False})
        summary = asyncio.run(collect(s, progress=False))
        bodies = list(fake.bodies)
    assert all(isinstance(m["content"], str) for b in bodies for m in b["messages"])
    assert summary.models["m"]["cache_read_tokens"] == 0


# -- OpenAI-compatible: automatic prefix caching ----------------------------------------------


@pytest.mark.parametrize("history", ["session", "last_k", "instrument"])
def test_openai_prefix_stays_byte_stable_and_cached_tokens_are_recorded(tmp_path, history):
    with FakeLLM() as fake:
        s = study(tmp_path, "openai", fake.base_url, sessions=2, history=history)
        summary = asyncio.run(collect(s, progress=False))
        bodies = list(fake.bodies)
    assert summary.complete
    by_seed: dict[int, list] = {}
    for body in bodies:
        by_seed.setdefault(body["seed"], []).append(body["messages"])
    stable = 0
    for sent in by_seed.values():
        for prev, now in zip(sent, sent[1:], strict=False):
            if now[: len(prev)] == prev:  # byte for byte the previous prompt, then more
                stable += 1
    rows = turns(summary.store_path)
    read = sum(r["cache_read_tokens"] for r in rows)
    assert summary.models["m"]["cache_read_tokens"] == read
    if history == "session":  # the whole history carried: every prompt extends the last
        assert stable == sum(len(v) - 1 for v in by_seed.values())
        assert read > 0.5 * summary.models["m"]["prompt_tokens"]
    assert all(r["cache_read_tokens"] % 128 == 0 for r in rows)
    assert all(r["cache_write_tokens"] == 0 for r in rows)


def test_fake_cache_counts_whole_message_prefixes():
    fake = FakeLLM()
    system, messages = conversation(12, chars=600)
    sent = [plain(m) for m in system + messages]
    assert fake.cache.automatic(sent[:5]) == 0  # nothing seen yet
    read = fake.cache.automatic(sent)
    assert read == 0 or read == estimate_tokens(sent[:5]) // 128 * 128


# -- prices, estimates and old stores ---------------------------------------------------------


@pytest.mark.parametrize(
    "usage, batch, expected",
    [
        (Usage(1_000_000, 0), False, 3.0),
        (Usage(1_000_000, 0, cache_read=1_000_000), False, 0.3),
        (Usage(1_000_000, 0, cache_write=1_000_000), False, 3.75),
        (Usage(2_000_000, 1_000_000, 1_000_000), False, 3.0 + 0.3 + 15.0),
        (Usage(1_000_000, 1_000_000), True, (3.0 + 15.0) / 2),
        (Usage(1_000_000, 0, cache_read=1_000_000), True, 0.15),
        (Usage(0, 0), True, 0.0),
    ],
)
def test_cost_prices_each_kind_of_token(usage, batch, expected):
    price = {**ANTHROPIC_PRICE, "batch": 0.5}
    assert cost_of(price, usage, batch=batch) == pytest.approx(expected)


def test_price_table_defaults_and_errors(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[models.a]\ninput = 2\noutput = 8\n")
    assert load_prices(path)["a"] == {
        "input": 2,
        "output": 8,
        "cached_input": 2,
        "cache_write": 2,
        "batch": 1.0,
    }
    for bad in ("batch = 0", "batch = 1.5", "cached_input = -1", "cache_read = 1"):
        path.write_text(f"[models.a]\ninput = 2\noutput = 8\n{bad}\n")
        result = CliRunner().invoke(main, ["collect", "nope.toml", "--prices", str(path)])
        assert (
            result.exit_code == 2
            and "error:" in result.output
            and "Traceback" not in (result.output)
        )


def test_dry_run_prices_plain_cached_batch_and_both(tmp_path):
    (tmp_path / "study.toml").write_text(
        f"""
name = "dry"
seed = 1
sessions_per_model = 10
instruments = ["psa", "aods"]
output_dir = "{tmp_path / "out"}"

[[models]]
name = "claude"
provider = "anthropic"
model = "claude-sonnet"
"""
    )
    (tmp_path / "prices.toml").write_text(
        "[models.claude]\ninput = 3.0\noutput = 15.0\ncached_input = 0.3\n"
        "cache_write = 3.75\nbatch = 0.5\n"
    )
    args = ["collect", str(tmp_path / "study.toml"), "--dry-run"]
    result = CliRunner().invoke(main, [*args, "--prices", str(tmp_path / "prices.toml")])
    assert result.exit_code == 0, result.output
    costs = {
        way: float(v.replace(",", ""))
        for way, v in re.findall(r"(plain|cached|batch|batch\+cached) \$([\d.,]+)", result.output)
    }
    assert set(costs) == {"plain", "cached", "batch", "batch+cached"}, result.output
    assert costs["batch"] == pytest.approx(costs["plain"] / 2, rel=1e-3)
    assert costs["batch+cached"] == pytest.approx(costs["cached"] / 2, rel=1e-3)
    assert costs["cached"] < costs["plain"]
    assert not (tmp_path / "out").exists()


OLD_TURNS = """CREATE TABLE turns (
  session TEXT NOT NULL, turn INTEGER NOT NULL, instrument TEXT NOT NULL,
  context TEXT NOT NULL, messages TEXT NOT NULL, request TEXT NOT NULL, meta TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost REAL NOT NULL,
  attempts INTEGER NOT NULL, finished REAL NOT NULL, PRIMARY KEY (session, turn))"""


OLD_COLUMNS = (
    "session, turn, instrument, context, messages, request, meta, prompt_tokens, "
    "completion_tokens, cost, attempts, finished"
)


def old_store(tmp_path):
    """A store as vaar wrote it before the cache columns: a real run with its turns table
    rebuilt in the old layout, and its first session's last two turns not yet asked."""
    s = parse_study(
        {
            "name": "old",
            "seed": 1,
            "sessions_per_model": 3,
            "instruments": ["psa"],
            "output_dir": str(tmp_path / "out"),
            "models": [{"name": "sim", "provider": "simulated"}],
        }
    )
    summary = asyncio.run(collect(s, progress=False))
    con = sqlite3.connect(summary.store_path)
    (first,) = con.execute("SELECT session FROM sessions ORDER BY rowid LIMIT 1").fetchone()
    (last,) = con.execute("SELECT MAX(turn) FROM turns WHERE session=?", (first,)).fetchone()
    con.executescript(
        f"ALTER TABLE turns RENAME TO t0; {OLD_TURNS}; "
        f"INSERT INTO turns SELECT {OLD_COLUMNS} FROM t0; DROP TABLE t0;"
    )
    with con:
        con.execute("DELETE FROM turns WHERE session=? AND turn>=?", (first, last - 1))
        con.execute("DELETE FROM answers WHERE session=? AND turn>=?", (first, last - 1))
        con.execute("UPDATE sessions SET status='running' WHERE session=?", (first,))
    con.close()
    return s, summary.store_path, first


def columns(path):
    return [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(turns)")]


def test_a_store_from_before_the_cache_columns_is_read_and_resumed(tmp_path):
    s, path, first = old_store(tmp_path)
    sqlite3.connect(path).executescript("DROP TABLE batches; DROP TABLE batch_results;")
    assert "cache_read_tokens" not in columns(path)
    reader = Store(path, readonly=True)  # a reader sees the new columns, with their defaults
    try:
        usage = reader.usage_by_model()["sim"]
    finally:
        reader.close()
    assert usage["cache_read_tokens"] == usage["reasoning_tokens"] == 0
    assert usage["prompt_tokens"] > 0
    assert all(t["cache_write_tokens"] == 0 for x in transcripts(path) for t in x["turns"])
    assert "cache_read_tokens" not in columns(path)  # reading changed nothing
    summary = asyncio.run(collect(s, progress=False))  # the writer upgrades, then resumes
    assert summary.complete and summary.models["sim"]["answers"]["ok"] > 0
    assert columns(path)[-3:] == ["cache_read_tokens", "cache_write_tokens", "reasoning_tokens"]
    tables = {n for (n,) in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert {"batches", "batch_results"} <= tables  # the batch tables are created too
    con = sqlite3.connect(path)
    assert (
        con.execute("SELECT COUNT(*) FROM turns WHERE session=?", (first,)).fetchone()[0]
        == (
            con.execute(
                "SELECT COUNT(*) FROM turns WHERE session<>? GROUP BY session", (first,)
            ).fetchone()[0]
        )
    )
    json.dumps(summary.to_dict())


def test_a_table_with_other_extra_columns_is_still_refused(tmp_path):
    _, path, _ = old_store(tmp_path)
    sqlite3.connect(path).execute("ALTER TABLE turns ADD COLUMN bogus INTEGER")
    result = CliRunner().invoke(main, ["export", str(path), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "not a" in result.output, result.output


def test_estimates_json_and_report_table_carry_the_token_kinds(tmp_path):
    import jsonschema

    from vaar.report.document import _collection, load_schema
    from vaar.report.html import COLLECTION_COLUMNS, _present

    with FakeLLM() as fake:
        s = study(tmp_path, "anthropic", fake.base_url)
        summary = asyncio.run(collect(s, progress=False, prices={"m": ANTHROPIC_PRICE}))
    section = _collection(summary)
    schema = load_schema()
    jsonschema.Draft202012Validator(
        {**schema["properties"]["collection"], "$defs": schema.get("$defs", {})}
    ).validate(section)
    row = section["models"][0]
    assert row["cache_read_tokens"] > 0 and row["cache_write_tokens"] > 0
    assert row["reasoning_tokens"] == 0
    shown = [key for key, _ in _present(COLLECTION_COLUMNS, section["models"])]
    assert {"cache_read_tokens", "cache_write_tokens", "cost"} <= set(shown)
    for kind in ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
        assert (
            kind
            in schema["properties"]["collection"]["properties"]["models"]["items"]["properties"]
        )
