"""Collection with the simulated provider: sessions, counterbalancing, history, resume, store."""

import asyncio
import json
import sqlite3

import numpy as np
import pytest

from vaar.collection import collect
from vaar.collection.providers.simulated import planted_paths
from vaar.config import parse_study
from vaar.data import LONG_COLUMNS, long_table, wide_table
from vaar.errors import ConfigError
from vaar.instruments import load_instrument


def study(tmp_path, sessions=12, models=None, **over):
    raw = {
        "name": "t",
        "seed": 7,
        "sessions_per_model": sessions,
        "instruments": ["iuipc10", "psa", "aods"],
        "output_dir": str(tmp_path / "out"),
        "models": models
        or [
            {"name": "sim-a", "provider": "simulated", "params": {"profile": "aligned"}},
            {"name": "sim-r", "provider": "simulated", "params": {"profile": "reversed"}},
        ],
    }
    raw.update(over)
    return parse_study(raw)


def run(s, **kw):
    return asyncio.run(collect(s, progress=False, **kw))


def test_collect_writes_one_row_per_session_and_item(tmp_path):
    s = study(tmp_path)
    summary = run(s)
    assert summary.complete, summary.lines()
    store = s.out_path / "collection.sqlite"
    assert summary.store_path == store
    long = long_table(store)
    assert list(long.columns) == LONG_COLUMNS
    n_items = sum(len(load_instrument(i).items) for i in s.instruments)
    assert len(long) == 2 * 12 * n_items
    assert long.groupby("session").size().eq(n_items).all()
    assert set(long["status"]) <= {"ok", "invalid", "refused"}
    ok = long["status"] == "ok"
    assert long.loc[ok, "value"].notna().all() and long.loc[~ok, "value"].isna().all()
    assert (long["attempts"] >= 1).all()
    # presented positions are a permutation of 1..n within each session x instrument
    for (_, ins), group in long.groupby(["session", "instrument"]):
        assert sorted(group["position"]) == list(range(1, len(load_instrument(ins).items) + 1))
    # the store is in WAL mode and records the study
    con = sqlite3.connect(store)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT value FROM meta WHERE key='study'").fetchone()[0] == "t"
    statuses = {r[0] for r in con.execute("SELECT status FROM sessions")}
    assert statuses == {"done"}
    assert summary.models["sim-a"]["done"] == 12


def test_item_order_is_counterbalanced_by_seed_and_reproducible(tmp_path):
    first = long_table(run(study(tmp_path / "a")).store_path)
    again = long_table(run(study(tmp_path / "b")).store_path)
    assert first.equals(again)
    orders = {
        tuple(g.sort_values("position")["item"])
        for _, g in first[first["instrument"] == "psa"].groupby("session")
    }
    assert len(orders) == 24  # every session its own order
    other_seed = long_table(run(study(tmp_path / "c", seed=8)).store_path)
    assert not first["value"].equals(other_seed["value"])


def test_fixed_order_when_not_randomized(tmp_path):
    s = study(tmp_path, sessions=3, session={"randomize_items": False})
    long = long_table(run(s).store_path)
    psa = [i.id for i in load_instrument("psa").items]
    for _, g in long[long["instrument"] == "psa"].groupby("session"):
        assert list(g.sort_values("position")["item"]) == psa


def _turns(store):
    con = sqlite3.connect(store)
    rows = con.execute(
        "SELECT session, turn, instrument, context, messages FROM turns ORDER BY session, turn"
    ).fetchall()
    return [(s, t, i, json.loads(c), json.loads(m)) for s, t, i, c, m in rows]


@pytest.mark.parametrize(
    "history, check",
    [
        ({"mode": "session"}, lambda t, ctx, ins, prev: ctx == list(range(t))),
        (
            {"mode": "last_k", "last_k": 3},
            lambda t, ctx, ins, prev: ctx == list(range(max(0, t - 3), t)),
        ),
        ({"mode": "instrument"}, lambda t, ctx, ins, prev: all(prev[c] == ins for c in ctx)),
    ],
)
def test_history_policies(tmp_path, history, check):
    s = study(tmp_path, sessions=2, session={"history": history})
    turns = _turns(run(s).store_path)
    by_session = {}
    for sid, t, ins, ctx, msgs in turns:
        prev = by_session.setdefault(sid, {})
        prev[t] = ins
        assert check(t, ctx, ins, prev), (history, t, ctx)
        assert msgs[0]["role"] == "user" and msgs[-1]["role"] == "assistant"
    if history["mode"] == "instrument":
        # the first turn of each instrument starts a fresh conversation
        firsts = [ctx for sid, t, ins, ctx, _ in turns if t == 0 or by_session[sid][t - 1] != ins]
        assert all(ctx == [] for ctx in firsts)


def test_token_cap_drops_oldest_turns(tmp_path):
    s = study(tmp_path, sessions=2, session={"history": {"mode": "session", "max_tokens": 600}})
    turns = _turns(run(s).store_path)
    late = [ctx for _, t, _, ctx, _ in turns if t > 30]
    assert late and all(0 < len(ctx) < 30 for ctx in late)
    assert all(ctx == sorted(ctx) and ctx[-1] == t - 1 for (_, t, _, ctx, _) in turns if t > 30)


def test_block_turns_ask_several_items_per_turn(tmp_path):
    s = study(tmp_path, sessions=4, session={"items_per_turn": 4})
    store = run(s).store_path
    long = long_table(store)
    turns = _turns(store)
    per_session = sum(-(-len(load_instrument(i).items) // 4) for i in s.instruments)
    assert len(turns) == 2 * 4 * per_session  # blocks never span instruments
    assert (long["status"] == "ok").mean() > 0.9


def test_history_is_real_chat_turns(tmp_path):
    """The request a turn sends is system + earlier user/assistant messages + the new item."""
    s = study(tmp_path, sessions=1)
    store = run(s).store_path
    turns = _turns(store)
    _, t, _, ctx, msgs = turns[5]
    assert ctx == [0, 1, 2, 3, 4]
    roles = [m["role"] for _, _, _, _, ms in turns[:5] for m in ms] + [m["role"] for m in msgs]
    assert set(roles) == {"user", "assistant"}
    assert all('Item: "' in m["content"] for m in msgs[:1])


def test_resume_after_partial_store_gives_the_same_answers(tmp_path):
    full = long_table(run(study(tmp_path / "full")).store_path)
    s = study(tmp_path / "cut")
    store = run(s).store_path
    con = sqlite3.connect(store, isolation_level=None)
    # simulate a crash: drop the later turns of some sessions and mark them unfinished
    con.execute("DELETE FROM answers WHERE turn >= 17 AND session LIKE 'sim-a/%'")
    con.execute("DELETE FROM turns WHERE turn >= 17 AND session LIKE 'sim-a/%'")
    con.execute("UPDATE sessions SET status='running' WHERE session LIKE 'sim-a/%'")
    con.execute("DELETE FROM answers WHERE session = 'sim-r/0003'")
    con.execute("DELETE FROM turns WHERE session = 'sim-r/0003'")
    con.execute("DELETE FROM sessions WHERE session = 'sim-r/0003'")
    con.close()
    summary = run(s)
    assert summary.complete
    resumed = long_table(store)
    key = ["session", "item"]
    pd_full = full.sort_values(key).reset_index(drop=True)
    pd_resumed = resumed.sort_values(key).reset_index(drop=True)
    assert pd_full.equals(pd_resumed)
    asked = sqlite3.connect(store).execute("SELECT COUNT(*) FROM turns").fetchone()[0]
    assert asked == len(_turns(run(study(tmp_path / "full")).store_path))


def test_store_refuses_a_changed_design(tmp_path):
    run(study(tmp_path))
    with pytest.raises(Exception, match="different study design"):
        run(study(tmp_path, seed=99))


def test_bad_provider_params_are_named(tmp_path):
    """The study's validation rejects them (vaar validate), before anything runs."""
    with pytest.raises(ConfigError, match=r"models\[0\]\.params\.profil: unknown parameter"):
        study(tmp_path, models=[{"name": "m", "provider": "simulated", "params": {"profil": "x"}}])
    with pytest.raises(ConfigError, match=r"models\[0\]\.params\.profile"):
        study(tmp_path, models=[{"name": "m", "provider": "simulated", "params": {"profile": "x"}}])


def test_unknown_provider_lists_known():
    with pytest.raises(
        ConfigError, match=r"unknown provider 'foo' \(known: anthropic, openai, simulated\)"
    ):
        parse_study(
            {
                "name": "t",
                "sessions_per_model": 1,
                "instruments": ["psa"],
                "models": [{"name": "m", "provider": "foo"}],
            }
        )


def _sum_scores(wide, instruments):
    from vaar.data import score_items

    scored = score_items(wide, instruments)
    out = {}
    for ins in instruments:
        out[ins.role] = scored[[i.id for i in ins.items]].mean(axis=1)
    return out


@pytest.mark.slow
def test_simulated_models_carry_their_planted_signs(tmp_path):
    """Sum-score regressions of AoDS on PC and PSA recover the planted signs per profile
    (the latent recovery with lavaan is tested with vaar.sem)."""
    models = [
        {"name": f"sim-{p}", "provider": "simulated", "params": {"profile": p}}
        for p in ("aligned", "reversed", "null", "mixed")
    ]
    s = study(tmp_path, sessions=300, models=models)
    long = long_table(run(s).store_path)
    wide = wide_table(long)
    instruments = [load_instrument(i) for i in s.instruments]
    for model in models:
        rows = wide[wide["model"] == model["name"]]
        scores = _sum_scores(rows, instruments)
        frame = np.column_stack([scores["privacy"], scores["prosocial"], scores["sharing"]])
        frame = frame[~np.isnan(frame).any(axis=1)]
        z = (frame - frame.mean(0)) / frame.std(0)
        beta = np.linalg.lstsq(np.column_stack([z[:, 0], z[:, 1]]), z[:, 2], rcond=None)[0]
        truth = planted_paths(model["params"])
        for b, planted in zip(beta, (truth["privacy"], truth["prosocial"]), strict=True):
            if planted == 0:
                assert abs(b) < 0.15, (model, beta)
            else:
                assert np.sign(b) == np.sign(planted) and abs(b) > 0.2, (model, beta)


def test_personas_from_csv_open_each_session(tmp_path):
    personas = tmp_path / "personas.csv"
    personas.write_text("persona,note\nYou are a nurse in Lyon.,x\nYou are a retired farmer.,y\n")
    s = study(tmp_path, sessions=3, session={"personas": str(personas)})
    store = run(s).store_path
    systems = dict(sqlite3.connect(store).execute("SELECT session, system FROM sessions"))
    assert systems["sim-a/0000"].endswith("You are a nurse in Lyon.")
    assert systems["sim-a/0001"].endswith("You are a retired farmer.")
    assert systems["sim-a/0002"].endswith("You are a nurse in Lyon.")  # in turn
    with pytest.raises(ConfigError, match="session.personas: .*: no such personas file"):
        run(study(tmp_path / "x", session={"personas": str(tmp_path / "none.csv")}))
    personas.write_text("persona\nok\n\n  \n")
    with pytest.raises(ConfigError, match=r"empty persona on line\(s\) \[3\]"):
        run(study(tmp_path / "y", session={"personas": str(personas)}))


def test_progress_table_and_plain_lines():
    import io

    from rich.console import Console

    from vaar.collection.progress import ModelStats, _table

    stats = ModelStats("gpt-x", sessions=10, done=4, failed=1, turns=120, invalid=3, refused=1)
    stats.retry("429")
    stats.retry("5xx")
    console = Console(file=io.StringIO(), width=120)
    console.print(_table([stats]))
    text = console.file.getvalue()
    assert "gpt-x" in text and "4/10" in text and " 2 " in text and " 1 " in text
    line = stats.line()
    assert "sessions 4/10 done, 1 failed" in line and "retries 2 (429: 1)" in line
    assert "invalid 3, refused 1" in line
