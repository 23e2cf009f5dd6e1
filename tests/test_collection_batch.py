"""Batch collection in waves against loopback fakes of the OpenAI Batch API and the Anthropic
Message Batches API: the same answers as a live run, one batch per wave, errored requests and
expired or cancelled batches sent again, and a `kill -9` mid-wave resumed by polling the batch
in flight (nothing asked twice, nothing lost, no batch submitted twice)."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.fakes.fake_batch import BatchFaults, FakeBatchLLM
from vaar.collection import collect
from vaar.collection.batch import custom_id
from vaar.config import parse_study

POLL = 0.01
PRICE = {"input": 3.0, "output": 15.0, "batch": 0.5}


def study_dict(tmp_path, provider, url, sessions=3, instruments=("westin", "aods"), out="out"):
    return {
        "name": "batch",
        "seed": 11,
        "sessions_per_model": sessions,
        "instruments": list(instruments),
        "output_dir": str(tmp_path / out),
        "session": {"max_reasks": 2},
        "models": [
            {
                "name": "m",
                "provider": provider,
                "model": "fake",
                "base_url": url if provider == "openai" else url.removesuffix("/v1"),
                "concurrency": 2,
                "params": {"max_retries": 2, "backoff_initial": 0.01, "backoff_max": 0.05},
            }
        ],
    }


def answers(path):
    con = sqlite3.connect(path)
    rows = con.execute(
        "SELECT session, item, raw, value, status, attempts FROM answers ORDER BY session, item"
    ).fetchall()
    con.close()
    return rows


def live_answers(tmp_path, provider, **kw):
    """The reference: the same study collected live from a fresh fake (same respondent)."""
    with FakeBatchLLM() as fake:
        s = parse_study(study_dict(tmp_path, provider, fake.base_url, out="live", **kw))
        summary = asyncio.run(collect(s, progress=False))
    assert summary.complete
    return answers(summary.store_path)


def resent(fake) -> list[str]:
    """custom_ids sent in more than one batch although the earlier one answered them."""
    answered, twice = set(), []
    for batch in fake.batches:
        for cid in batch["custom_ids"]:
            if cid in answered:
                twice.append(cid)
        answered |= {c for c, (kind, _) in batch["results"].items() if kind == "succeeded"}
    return twice


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_waves_store_the_answers_of_a_live_run(tmp_path, provider):
    reference = live_answers(tmp_path, provider)
    with FakeBatchLLM() as fake:
        s = parse_study(study_dict(tmp_path, provider, fake.base_url))
        summary = asyncio.run(
            collect(s, progress=False, batch=True, batch_poll=POLL, prices={"m": PRICE})
        )
        assert fake.counts["requests"] == 0  # nothing went to the live endpoint
        batches = list(fake.batches)
    assert summary.complete, summary.lines()
    assert answers(summary.store_path) == reference
    turns = 3 + 12  # westin's 3 items, then aods' 12, one per turn
    assert len(batches) == turns  # one batch per wave: turn k of every session together
    assert all(len(b["custom_ids"]) == 3 for b in batches)
    assert resent(fake) == []
    m = summary.models["m"]
    plain = (m["prompt_tokens"] * 3.0 + m["completion_tokens"] * 15.0) / 1e6
    assert m["cost"] == pytest.approx(plain / 2)  # billed at the batch price
    con = sqlite3.connect(summary.store_path)
    stored = con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM batches").fetchone()
    assert stored == (turns, turns)
    assert all(s.startswith("ended:") for (s,) in con.execute("SELECT status FROM batches"))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_errors_expiry_and_cancellation_go_into_the_next_wave(tmp_path, provider):
    reference = live_answers(tmp_path, provider, sessions=4)
    faults = BatchFaults(error_rate=0.15, expire={2, 5}, cancel={3}, fail_create=1)
    with FakeBatchLLM(batch_faults=faults) as fake:
        s = parse_study(study_dict(tmp_path, provider, fake.base_url, sessions=4))
        summary = asyncio.run(collect(s, progress=False, batch=True, batch_poll=POLL))
        batches = list(fake.batches)
        errored = fake.counts["batch_errored"]
    assert summary.complete, summary.lines()
    assert answers(summary.store_path) == reference  # nothing lost, nothing asked twice
    assert errored > 0 and resent(fake) == []
    lost = [b for b in batches if b.get("lost")]
    assert {b["ordinal"] for b in lost} == {2, 3, 5}
    for b in lost:  # what an expired or cancelled batch left undone went out again
        undone = [c for c, (kind, _) in b["results"].items() if kind != "succeeded"]
        later = {c for x in batches if x["ordinal"] > b["ordinal"] for c in x["custom_ids"]}
        assert undone and set(undone) <= later


def test_a_request_that_keeps_failing_fails_its_session_only(tmp_path):
    faults = BatchFaults(error_rate=1.0)
    with FakeBatchLLM(batch_faults=faults) as fake:
        s = parse_study(study_dict(tmp_path, "openai", fake.base_url, sessions=2))
        summary = asyncio.run(collect(s, progress=False, batch=True, batch_poll=POLL))
        n_batches = len(fake.batches)
    assert not summary.complete
    assert summary.models["m"]["failed"] == 2
    assert "batch request failed 4 times" in " ".join(summary.incomplete)
    assert n_batches == 4  # the first try and MAX_RESUBMITS more, then the sessions fail


def test_custom_ids_are_stable_and_valid():
    ids = {custom_id(seed, {"messages": [{"role": "user", "content": str(i)}]})
           for seed in range(50) for i in range(20)}  # fmt: skip
    assert len(ids) == 1000
    assert all(len(c) <= 64 and c.replace("-", "").isalnum() for c in ids)
    assert custom_id(1, {"a": 1, "b": 2}) == custom_id(1, {"b": 2, "a": 1})


def test_kill_9_mid_wave_resumes_by_polling_the_batch_in_flight(tmp_path):
    reference = live_answers(tmp_path, "anthropic", sessions=4)
    faults = BatchFaults(polls=4)
    with FakeBatchLLM(batch_faults=faults) as fake:
        study = tmp_path / "study.toml"
        data = study_dict(tmp_path, "anthropic", fake.base_url, sessions=4)
        m = data["models"][0]
        study.write_text(
            f'name = "batch"\nseed = 11\nsessions_per_model = 4\n'
            f'instruments = ["westin", "aods"]\noutput_dir = "{tmp_path / "out"}"\n'
            f"[session]\nmax_reasks = 2\n"
            f'[[models]]\nname = "m"\nprovider = "anthropic"\nmodel = "fake"\n'
            f'base_url = "{m["base_url"]}"\nconcurrency = 2\n'
            f"[models.params]\nmax_retries = 2\nbackoff_initial = 0.01\n"
        )
        cmd = [sys.executable, "-c", "from vaar.cli import main; main()", "collect",
               str(study), "--batch", "--batch-poll", "0.02", "--no-progress"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        # kill once the 4th batch is in flight: accepted, polled at least once, not ended
        while time.monotonic() < deadline:
            if len(fake.batches) >= 4 and 0 < fake.batches[3]["polls"] < faults.polls - 1:
                break
            time.sleep(0.002)
        else:
            proc.kill()
            pytest.fail(f"no 4th batch in flight: {proc.communicate()[1].decode()[-500:]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        in_flight = fake.batches[3]
        assert not in_flight["ended"] and len(fake.batches) == 4
        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-1000:]
        assert in_flight["ended"]  # the rerun polled it to its end...
        later = [c for b in fake.batches[4:] for c in b["custom_ids"]]
        assert not set(in_flight["custom_ids"]) & set(later)  # ...and did not send it again
        assert resent(fake) == []
        assert len(fake.batches) == 3 + 12
    assert answers(tmp_path / "out" / "collection.sqlite") == reference


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_max_cost_counts_a_batch_before_it_is_sent(tmp_path, provider):
    reference = live_answers(tmp_path, provider)
    with FakeBatchLLM() as fake:
        s = parse_study(study_dict(tmp_path, provider, fake.base_url))
        full = asyncio.run(
            collect(s, progress=False, batch=True, batch_poll=POLL, prices={"m": PRICE})
        )
        limit = full.models["m"]["cost"] / 3
    with FakeBatchLLM() as fake:
        s = parse_study(study_dict(tmp_path, provider, fake.base_url, out="capped"))
        capped = asyncio.run(
            collect(
                s, progress=False, batch=True, batch_poll=POLL, prices={"m": PRICE}, max_cost=limit
            )  # fmt: skip
        )
        assert not capped.complete and "could be passed by the next batch" in capped.stopped
        assert 0 < capped.models["m"]["cost"] <= limit  # never more than allowed
        assert capped.models["m"]["failed"] == 0  # stopped, not failed
        sent = len(fake.batches)
        rest = asyncio.run(collect(s, progress=False, batch=True, batch_poll=POLL))
        assert rest.complete and resent(fake) == []
        assert len(fake.batches) == 15 and sent < 15
    assert answers(rest.store_path) == reference


def test_progress_shows_waves_batch_state_and_eta():
    from rich.console import Console

    from vaar.collection.progress import ModelStats, _table

    stats = ModelStats("m", sessions=4, batch_wave=3, batch_waves_planned=15)
    stats.batch_state, stats.batches, stats.batch_seconds = "in_progress 2/4", 3, 30.0
    assert "wave 3/15 (in_progress 2/4), 3 batches, 0 resubmitted" in stats.line()
    assert stats.eta() == pytest.approx(10.0 * 12)  # the mean wave so far, 12 waves to go
    console = Console(record=True, width=200)
    console.print(_table([stats, ModelStats("live")]))
    text = console.export_text()
    assert "wave 3/15" in text and "live" in text
