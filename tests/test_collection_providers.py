"""Real providers over real HTTP on loopback, against the fault-injecting fake API."""

import asyncio
import json
import sqlite3
import time

import pytest
from fakes.fake_llm import Faults

from vaar.collection import collect
from vaar.collection.providers import ChatRequest, ProviderError
from vaar.collection.providers.http import retry_after_seconds
from vaar.collection.providers.openai import OpenAIProvider
from vaar.config import ModelSpec, parse_study
from vaar.data import long_table
from vaar.errors import ConfigError
from vaar.instruments import load_instrument

FAST = {"timeout": 0.3, "backoff_initial": 0.01, "backoff_max": 0.05, "max_retries": 12}
SECRET = "sk-test-0123456789-do-not-store"


def study(tmp_path, models, sessions=6, instruments=("psa", "aods"), **over):
    raw = {
        "name": "p",
        "seed": 3,
        "sessions_per_model": sessions,
        "instruments": list(instruments),
        "output_dir": str(tmp_path / "out"),
        "models": models,
    }
    raw.update(over)
    return parse_study(raw)


def openai_model(url, name="o", **params):
    return {
        "name": name,
        "provider": "openai",
        "model": "fake-model",
        "base_url": url,
        "params": {**FAST, **params},
        "concurrency": 8,
    }


def anthropic_model(url, name="a", **params):
    return {
        "name": name,
        "provider": "anthropic",
        "model": "claude-fake",
        "base_url": url.removesuffix("/v1"),
        "params": {**FAST, **params},
        "concurrency": 8,
    }


def run(s, **kw):
    return asyncio.run(collect(s, progress=False, **kw))


def n_items(s):
    return sum(len(load_instrument(i).items) for i in s.instruments)


def test_openai_and_anthropic_requests_and_metadata_are_recorded(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("VAAR_TEST_KEY", SECRET)
    fake = fake_llm()
    models = [
        {**openai_model(fake.base_url, temperature=0.7, top_p=0.9), "api_key_env": "VAAR_TEST_KEY"},
        {**anthropic_model(fake.base_url, temperature=0.2), "api_key_env": "VAAR_TEST_KEY"},
    ]
    s = study(tmp_path, models, sessions=2)
    summary = run(s)
    assert summary.complete, summary.lines()
    long = long_table(summary.store_path)
    assert len(long) == 2 * 2 * n_items(s) and (long["status"] == "ok").all()
    # the key went to the server in each provider's own header ...
    auth = {h.get("Authorization") for h in fake.headers} | {
        h.get("x-api-key") for h in fake.headers
    }
    assert f"Bearer {SECRET}" in auth and SECRET in auth
    openai_bodies = [b for b in fake.bodies if "seed" in b]
    assert {b["model"] for b in openai_bodies} == {"fake-model"}
    assert all(b["temperature"] == 0.7 and b["top_p"] == 0.9 for b in openai_bodies)
    anthropic_bodies = [b for b in fake.bodies if "system" in b]
    assert all(m["role"] != "system" for b in anthropic_bodies for m in b["messages"])
    # ... and the store records what was sent (without messages or key) and what came back
    con = sqlite3.connect(summary.store_path)
    rows = con.execute(
        "SELECT s.model, t.request, t.meta FROM turns t JOIN sessions s USING (session)"
    ).fetchall()
    for model, request, meta in rows:
        request, meta = json.loads(request), json.loads(meta)
        assert "messages" not in request and SECRET not in json.dumps(request)
        if model == "o":
            assert request["temperature"] == 0.7 and request["max_tokens"] == 64
            assert isinstance(request["seed"], int)
            assert meta["system_fingerprint"] == "fp_fake" and meta["finish_reason"] == "stop"
            assert meta["usage"]["prompt_tokens"] > 0
        else:
            assert request["model"] == "claude-fake" and "seed" not in request
            assert meta["finish_reason"] == "end_turn"
    usage = summary.models["o"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0


def test_no_key_on_disk_or_in_logs(tmp_path, fake_llm, monkeypatch, capfd):
    monkeypatch.setenv("VAAR_TEST_KEY", SECRET)
    fake = fake_llm(Faults(rate_500=0.2))
    models = [{**openai_model(fake.base_url), "api_key_env": "VAAR_TEST_KEY"}]
    s = study(tmp_path, models, sessions=2)
    asyncio.run(collect(s, progress=True))
    out, err = capfd.readouterr()
    assert SECRET not in out + err and "retries" in out
    files = list((tmp_path / "out").rglob("*"))
    assert files
    for path in files:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_structured_output_sends_a_json_schema(tmp_path, fake_llm):
    fake = fake_llm()
    s = study(tmp_path, [openai_model(fake.base_url, structured=True)], sessions=2)
    summary = run(s)
    assert summary.complete
    formats = [b["response_format"] for b in fake.bodies]
    assert all(f["type"] == "json_schema" for f in formats)
    schema = formats[0]["json_schema"]["schema"]
    assert schema["properties"]["answer"]["enum"] == [1, 2, 3, 4, 5]
    long = long_table(summary.store_path)
    assert long["raw"].str.startswith('{"answer"').all() and (long["status"] == "ok").all()


def test_a_run_under_30_percent_faults_records_every_answer_once(tmp_path, fake_llm):
    clean = fake_llm()
    s_clean = study(tmp_path / "clean", [openai_model(clean.base_url)], sessions=8)
    expected = long_table(run(s_clean).store_path)

    faults = Faults(
        rate_429=0.08,
        retry_after=0.02,
        rate_500=0.08,
        rate_timeout=0.04,
        slow_for=0.6,
        rate_drop=0.05,
        rate_garbage=0.03,
        rate_refusal=0.02,
        seed=11,
    )
    fake = fake_llm(faults)
    s = study(tmp_path / "faulty", [openai_model(fake.base_url)], sessions=8)
    summary = run(s)
    assert summary.complete, summary.lines()
    for kind in ("429", "500", "timeout", "drop", "garbage", "refusal"):
        assert fake.counts[kind] > 0, kind
    long = long_table(summary.store_path)
    assert len(long) == len(expected) == 8 * n_items(s)
    assert not long.duplicated(["session", "item"]).any()
    turns = sqlite3.connect(summary.store_path).execute("SELECT COUNT(*) FROM turns").fetchone()
    assert turns[0] == 8 * n_items(s)
    m = summary.models["o"]
    assert m["retries"] >= fake.counts["429"] + fake.counts["500"] + fake.counts["drop"]
    assert m["rate_limited"] == fake.counts["429"]
    # garbage and refusals were re-asked; the answers are those of the fault-free run
    merged = expected.merge(long, on=["session", "item"], suffixes=("", "_f"))
    ok = merged["status_f"] == "ok"
    assert ok.mean() > 0.99
    assert (merged.loc[ok, "value"] == merged.loc[ok, "value_f"]).all()
    assert (merged.loc[ok, "position"] == merged.loc[ok, "position_f"]).all()
    assert (merged["attempts_f"] > 1).sum() >= 1


def test_retry_after_is_honoured(fake_llm):
    fake = fake_llm(Faults(first_429=1, retry_after=0.5))
    spec = ModelSpec(name="o", provider="openai", base_url=fake.base_url, params=FAST)

    async def ask():
        provider = OpenAIProvider(spec, [load_instrument("psa")])
        await provider.start()
        try:
            start = time.monotonic()
            item = load_instrument("psa").items[0]
            messages = [{"role": "user", "content": f'Item: "{item.text}"'}]
            reply = await provider.complete(ChatRequest(messages, seed=1))
            return reply, time.monotonic() - start
        finally:
            await provider.close()

    reply, elapsed = asyncio.run(ask())
    assert fake.counts["429"] == 1 and reply.text
    assert elapsed >= 0.5  # the backoff alone would have waited ~0.01 s
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None


def test_missing_key_variable_fails_before_any_request(tmp_path, fake_llm, monkeypatch):
    monkeypatch.delenv("VAAR_MISSING_KEY", raising=False)
    fake = fake_llm()
    models = [{**openai_model(fake.base_url), "api_key_env": "VAAR_MISSING_KEY"}]
    with pytest.raises(ConfigError, match="VAAR_MISSING_KEY is not set"):
        run(study(tmp_path, models))
    assert fake.counts["requests"] == 0


def test_bad_key_stops_the_model_with_a_clear_error(tmp_path, fake_llm, monkeypatch):
    monkeypatch.setenv("VAAR_TEST_KEY", "wrong")
    fake = fake_llm(Faults(status=401))
    models = [{**openai_model(fake.base_url), "api_key_env": "VAAR_TEST_KEY"}]
    summary = run(study(tmp_path, models, sessions=30))
    assert not summary.complete
    assert any("refused the API key (HTTP 401)" in line for line in summary.incomplete), (
        summary.lines()
    )
    # the sessions in flight, then the model stopped
    assert fake.counts["requests"] <= 8, (fake.counts, summary.lines())


def test_unreachable_base_url_gives_a_clear_error_after_bounded_retries(tmp_path):
    import socket

    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/v1"
        models = [openai_model(url, max_retries=3)]
        start = time.monotonic()
        summary = run(study(tmp_path, models, sessions=20))
    assert time.monotonic() - start < 10
    assert not summary.complete
    text = "\n".join(summary.lines())
    assert "cannot reach" in text and "gave up after 4 attempt(s)" in text


def test_unknown_provider_params_name_the_field(tmp_path):
    """The study's validation rejects it (vaar validate), before anything runs."""
    with pytest.raises(ConfigError, match=r"models\[0\]\.params\.temprature: unknown parameter"):
        study(tmp_path, [openai_model("http://127.0.0.1:9/v1", temprature=1)])


def test_provider_error_is_a_vaar_error():
    from vaar.errors import VaarError

    assert issubclass(ProviderError, VaarError)


def test_shared_cache_reuses_only_replies_that_parsed(tmp_path, fake_llm):
    from vaar.collection.parsing import parse_answer

    cache = tmp_path / "cache.sqlite"
    fake = fake_llm(Faults(rate_garbage=0.15, seed=5))
    first = study(tmp_path / "one", [openai_model(fake.base_url)], sessions=3)
    one = asyncio.run(collect(first, progress=False, cache_path=cache))
    assert one.complete and fake.counts["garbage"] > 0
    replies = [json.loads(r)["text"] for (r,) in sqlite3.connect(cache).execute(
        "SELECT reply FROM cache")]  # fmt: skip
    scales = [[(o.value, o.label) for o in load_instrument(i).options] for i in ("psa", "aods")]
    assert replies and all(
        any(parse_answer(t, options).status == "ok" for options in scales) for t in replies
    )
    assert not set(replies) & {"asdf qwerty", "Hmm.", "The weather is nice today."}

    # the same study into a new output dir: the garbage replies were not kept, so exactly
    # those turns (and, with the history changed, the turns after them) are asked again
    fake.faults.rate_garbage = 0.0
    asked = fake.counts["requests"]
    two = asyncio.run(collect(study(tmp_path / "two", [openai_model(fake.base_url)], sessions=3),
                              progress=False, cache_path=cache))  # fmt: skip
    assert two.models["o"]["cached"] > 0 and fake.counts["requests"] > asked
    assert (long_table(two.store_path)["attempts"] == 1).all()  # no garbage reused
    # and once more: now every request is answered from the cache, nothing paid twice
    asked = fake.counts["requests"]
    three = asyncio.run(collect(study(tmp_path / "3", [openai_model(fake.base_url)], sessions=3),
                                progress=False, cache_path=cache))  # fmt: skip
    assert fake.counts["requests"] == asked and three.models["o"]["prompt_tokens"] == 0
    key = ["session", "item"]
    a = long_table(two.store_path).sort_values(key).reset_index(drop=True)
    b = long_table(three.store_path).sort_values(key).reset_index(drop=True)
    assert a[["value", "status", "position", "raw"]].equals(
        b[["value", "status", "position", "raw"]]
    )

    # a changed parameter is a different request: nothing reused
    other = study(tmp_path / "three", [openai_model(fake.base_url, temperature=1.0)], sessions=1)
    four = asyncio.run(collect(other, progress=False, cache_path=cache))
    assert four.models["o"]["cached"] == 0 and fake.counts["requests"] > asked


def test_requests_per_minute_is_enforced(tmp_path, fake_llm):
    fake = fake_llm()
    model = {**openai_model(fake.base_url), "requests_per_minute": 1200, "concurrency": 16}
    s = study(tmp_path, [model], sessions=3, instruments=["buchanan_gc", "buchanan_tp"])
    start = time.monotonic()
    summary = run(s)
    elapsed = time.monotonic() - start
    assert summary.complete and fake.counts["requests"] == 36
    assert elapsed >= (36 - 20) / 20 * 0.9  # 20 per second after a burst of at most 20


def test_base_url_must_be_http(tmp_path):
    with pytest.raises(ConfigError, match="base_url: 'localhost:8000/v1' must start with http"):
        study(tmp_path, [openai_model("localhost:8000/v1")])


def test_concurrency_caps_requests_in_flight(tmp_path, fake_llm):
    fake = fake_llm(Faults(latency=0.05))
    models = [{**openai_model(fake.base_url), "concurrency": 3}]
    summary = run(study(tmp_path, models, sessions=9, instruments=["westin"]))
    assert summary.complete
    assert fake.counts["max_in_flight"] == 3  # reached, never exceeded
