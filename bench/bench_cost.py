"""What the demo protocol costs, four ways, against the loopback fakes of both providers.

The demo protocol (data/examples/demo.toml: IUIPC-10, PSA and AoDS, one item per turn, the
whole session's history carried, up to 2 re-asks) is collected from the fake LLM twice per
provider style with the same seed: live (prompt caching on) and with `--batch` (waves of
provider batches). The tokens each run stored, by kind, are priced with the providers'
documented price ratios and scaled to 1,000 sessions:

    plain         every prompt token at the input price, live
    cached        prompt tokens read from / written to the cache at their prices, live
    batch         plain, at the batch price
    batch+cached  the batch run's tokens by kind, at the batch price

Prices (USD per million tokens): Anthropic-style is Claude Sonnet's list price (input 3, output
15, cache reads 0.1x input, cache writes 1.25x input, batch 0.5x); OpenAI-style is gpt-4o-mini's
(input 0.15, output 0.60, cached input 0.5x, batch 0.5x). Target: batch+cached <= 1/4 of plain
for Anthropic-style pricing, and the batch run stores exactly the live run's answers.

The fakes' prompt caches never expire. A real one lives about 5 minutes (refreshed by each hit)
and a batch's requests hit it only as the provider happens to schedule them, so the cached
rows are what caching can save at best: live turns seconds apart come close to it, a wave
finishing hours after the previous one does not (see docs/collection.md).

    .venv/bin/python bench/bench_cost.py                 # 20 sessions per run
    .venv/bin/python bench/bench_cost.py --sessions 50
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.fake_batch import FakeBatchLLM  # noqa: E402
from vaar.collection import collect  # noqa: E402
from vaar.collection.cost import Usage, cost_of  # noqa: E402
from vaar.config import load_study, parse_study  # noqa: E402

PRICES = {
    "anthropic": {"input": 3.0, "output": 15.0, "cached_input": 0.30, "cache_write": 3.75,
                  "batch": 0.5},
    "openai": {"input": 0.15, "output": 0.60, "cached_input": 0.075, "batch": 0.5},
}  # fmt: skip


def demo_study(provider: str, url: str, sessions: int, out: Path):
    raw = load_study(ROOT / "data" / "examples" / "demo.toml").model_dump(mode="json")
    raw.update(
        name=f"cost-{provider}",
        sessions_per_model=sessions,
        output_dir=str(out),
        models=[
            {
                "name": "m",
                "provider": provider,
                "model": "fake",
                "base_url": url if provider == "openai" else url.removesuffix("/v1"),
                "concurrency": 16,
                "params": {"max_tokens": 16},
            }
        ],
    )
    raw.pop("analysis", None)
    return parse_study(raw)


def usage(store: Path) -> Usage:
    con = sqlite3.connect(store)
    row = con.execute(
        "SELECT SUM(prompt_tokens), SUM(completion_tokens), SUM(cache_read_tokens), "
        "SUM(cache_write_tokens), SUM(reasoning_tokens) FROM turns"
    ).fetchone()
    con.close()
    return Usage(*(int(x or 0) for x in row))


def answers(store: Path) -> list:
    con = sqlite3.connect(store)
    rows = con.execute(
        "SELECT session, item, raw, value, status FROM answers ORDER BY session, item"
    ).fetchall()
    con.close()
    return rows


def run(provider: str, sessions: int, tmp: Path, batch: bool) -> tuple[Path, float]:
    with FakeBatchLLM(keep_bodies=False) as fake:
        study = demo_study(provider, fake.base_url, sessions, tmp / f"{provider}-{batch}")
        started = time.monotonic()
        summary = asyncio.run(collect(study, progress=False, batch=batch, batch_poll=0.01))
        elapsed = time.monotonic() - started
    if not summary.complete:
        raise SystemExit(f"{provider} batch={batch}: incomplete: {summary.lines()}")
    return summary.store_path, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args()
    n = args.sessions
    scale = 1000 / n
    print(f"demo protocol, {n} sessions per run, costs per 1,000 sessions (USD)")
    with tempfile.TemporaryDirectory() as tmp:
        for provider, price in PRICES.items():
            live, t_live = run(provider, n, Path(tmp), batch=False)
            batched, t_batch = run(provider, n, Path(tmp), batch=True)
            same = answers(live) == answers(batched)
            u_live, u_batch = usage(live), usage(batched)
            plain = Usage(u_live.prompt, u_live.completion)
            costs = {
                "plain": cost_of(price, plain),
                "cached": cost_of(price, u_live),
                "batch": cost_of(price, plain, batch=True),
                "batch+cached": cost_of(price, u_batch, batch=True),
            }
            print(f"\n{provider}-style pricing {price}")
            print(f"  live run {t_live:.1f} s, batch run {t_batch:.1f} s; "
                  f"batch answers identical to live: {same}")  # fmt: skip
            for name, u in (("live", u_live), ("batch", u_batch)):
                print(
                    f"  tokens/1k sessions ({name}): prompt {u.prompt * scale:,.0f} "
                    f"(cache read {u.cache_read * scale:,.0f}, cache write "
                    f"{u.cache_write * scale:,.0f}), completion {u.completion * scale:,.0f}"
                )
            print(f"  {'way':<14}{'USD / 1k sessions':>20}{'ratio to plain':>16}")
            for way, usd in costs.items():
                print(f"  {way:<14}{usd * scale:>20,.2f}{usd / costs['plain']:>16.3f}")
            if not same:
                raise SystemExit("the batch run stored other answers than the live run")


if __name__ == "__main__":
    main()
