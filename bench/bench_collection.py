"""Collection throughput against a fake OpenAI-compatible server with fixed latency L.

Sessions are the demo protocol's: 38 one-item turns (iuipc10, psa, aods), each carrying the
whole session so far as history. With C sessions in flight and every reply taking L seconds,
no client can do better than C/L requests per second; this prints the measured rate and its
ratio to that bound for each C (issue 15's target: >= 0.95 at C=256, L=200 ms), the worker
processes the run used (`--workers`: auto, as `vaar collect` picks them, or a number; give
several to compare, e.g. `--workers auto 1`), the client's CPU time per request (everything
vaar does per turn: history, the reply-cache key, parsing, the store commit, HTTP; the
workers' CPU included, from their rusage once they are reaped, their start-up too), the fake
server's CPU per request, the same for a bare aiohttp loop sending the same requests (the
floor under any aiohttp client on this machine; --no-floor skips it), the client CPU of one
turn at turn 1 vs turn 38 (one session at a time against a zero-latency server: is the cost of
a turn independent of the history it carries?), and the peak memory of a 100k-answer run with
the simulated provider (no HTTP) in a fresh process.

The fake server (tests/fakes/fake_llm.py) runs in a process of its own, so client and server
each get a core, and answers every item "3" (a valid answer the client still parses and
stores) without simulating a prompt cache, so that what is measured is the client, not the
fake's respondent simulation.

    .venv/bin/python bench/bench_collection.py                 # C = 16, 64, 256; L = 0.2 s
    .venv/bin/python bench/bench_collection.py --concurrency 256 --workers auto 1 \
        --answers 0 --turn-sessions 0                          # the C=256 row, sharded vs not
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
INSTRUMENTS = ["iuipc10", "psa", "aods"]  # the demo protocol: 38 one-item turns
TURNS = 38


def start_server(port: int, latency: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.fake_llm",
            "--port",
            str(port),
            "--latency",
            str(latency),
            "--fixed-answer",
            "3",
            "--no-prompt-cache",
        ],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("fake server did not start")


def study(out: Path, url: str, concurrency: int, sessions: int):
    from vaar.config import parse_study

    return parse_study(
        {
            "name": "bench",
            "seed": 1,
            "sessions_per_model": sessions,
            "instruments": INSTRUMENTS,
            "output_dir": str(out),
            "models": [
                {
                    "name": "fake",
                    "provider": "openai",
                    "base_url": url,
                    "concurrency": concurrency,
                    "params": {"timeout": 30},
                }
            ],
        }
    )


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of this process's children that have ended and been reaped."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def throughput(
    url: str, concurrency: int, latency: float, seconds: float, workers: int | None, server: int
) -> dict:
    from vaar.collection import collect

    bound = concurrency / latency  # requests per second
    sessions = sessions_in_waves(concurrency, latency, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        s = study(Path(tmp), url, concurrency, sessions)
        kids, served = children_cpu(), process_cpu(server)
        cpu, wall = time.process_time(), time.perf_counter()
        summary = asyncio.run(collect(s, progress=False, workers=workers))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        kids, served = children_cpu() - kids, process_cpu(server) - served
    if not summary.complete:
        raise RuntimeError("\n".join(summary.lines()))
    requests = summary.models["fake"]["requests"]
    return {
        "concurrency": concurrency,
        "latency_s": latency,
        "workers": summary.workers,
        "sessions": sessions,
        "requests": requests,
        "seconds": round(wall, 2),
        "requests_per_s": round(requests / wall, 1),
        "sessions_per_s": round(sessions / wall, 2),
        "bound_requests_per_s": round(bound, 1),
        "ratio_to_bound": round(requests / wall / bound, 3),
        "client_cpu_us_per_request": round((cpu + kids) / requests * 1e6, 1),
        "parent_cpu_us_per_request": round(cpu / requests * 1e6, 1),
        "server_cpu_us_per_request": round(served / requests * 1e6, 1),
    }


def sessions_in_waves(concurrency: int, latency: float, seconds: float) -> int:
    """Whole waves of C sessions, all of one length, so that no slot idles at the end."""
    return concurrency * max(1, round(seconds / (TURNS * latency)))


def protocol_requests(url: str) -> tuple[str, dict, list[bytes]]:
    """The URL, headers and bodies vaar's own OpenAI provider sends in one demo-protocol
    session with every item answered "3": turn t carries the system prompt and turns 1..t-1
    (whole-session history)."""
    from vaar.collection.prompts import item_prompt
    from vaar.collection.providers import ChatRequest, provider_class
    from vaar.collection.sessions import plan_session
    from vaar.config import DEFAULT_SYSTEM_PROMPT
    from vaar.instruments import load_instruments

    instruments = load_instruments(INSTRUMENTS)
    spec = study(Path(tempfile.gettempdir()), url, 1, 1).models[0]
    provider = provider_class(spec.provider)(spec, instruments)
    messages, bodies = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}], []
    for turn in plan_session(instruments, 1, True, 1):
        prompt = item_prompt(turn.instrument, turn.items, turn.first_of_instrument)
        messages.append({"role": "user", "content": prompt})
        bodies.append(orjson.dumps(provider.body(ChatRequest(messages, 1))))
        messages.append({"role": "assistant", "content": "3"})
    headers = {**provider.headers(), "Content-Type": "application/json"}
    return provider.endpoint(), headers, bodies


def bare_client(url: str, concurrency: int, latency: float, seconds: float) -> dict:
    """The floor under any aiohttp client on this machine: C sessions of the same protocol's
    requests (built once, beforehand, by vaar's provider) sent by a bare aiohttp loop that only
    reads and decodes each reply: no history to build, no parsing, no store. The same run
    length and whole waves as `throughput`."""
    import aiohttp

    endpoint, headers, bodies = protocol_requests(url)

    async def run() -> int:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:
            left = [sessions_in_waves(concurrency, latency, seconds)]

            async def sessions() -> int:
                sent = 0
                while left[0] > 0:
                    left[0] -= 1
                    for body in bodies:
                        async with http.post(endpoint, data=body, headers=headers) as resp:
                            orjson.loads(await resp.read())
                        sent += 1
                return sent

            return sum(await asyncio.gather(*(sessions() for _ in range(concurrency))))

    cpu, wall = time.process_time(), time.perf_counter()
    requests = asyncio.run(run())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "ratio_to_bound": round(requests / wall / (concurrency / latency), 3),
        "client_cpu_us_per_request": round(cpu / requests * 1e6, 1),
        "requests": requests,
        "seconds": round(wall, 2),
    }


def per_turn_cpu(url: str, sessions: int) -> dict[int, float]:
    """Client CPU (us) of ModelRun.turn by turn index, one session at a time (nothing else
    runs in this process meanwhile), median over `sessions` sessions."""
    import statistics

    from vaar.collection import collect
    from vaar.collection.model_run import ModelRun

    by_turn: dict[int, list[float]] = {}
    original = ModelRun.turn

    async def timed(self, turn, *args, **kwargs):
        cpu = time.process_time()
        result = await original(self, turn, *args, **kwargs)
        by_turn.setdefault(turn.index + 1, []).append(time.process_time() - cpu)
        return result

    ModelRun.turn = timed
    try:
        with tempfile.TemporaryDirectory() as tmp:
            summary = asyncio.run(collect(study(Path(tmp), url, 1, sessions), progress=False))
    finally:
        ModelRun.turn = original
    if not summary.complete:
        raise RuntimeError("\n".join(summary.lines()))
    return {t: statistics.median(v) * 1e6 for t, v in sorted(by_turn.items())}


def memory_run(answers: int) -> dict:
    """In this (fresh) process: collect `answers` simulated answers, report time and peak RSS."""
    from vaar.collection import collect
    from vaar.config import parse_study
    from vaar.data import long_table, wide_table

    items = 28  # psa + aods
    with tempfile.TemporaryDirectory() as tmp:
        s = parse_study(
            {
                "name": "mem",
                "seed": 1,
                "sessions_per_model": -(-answers // items),
                "instruments": ["psa", "aods"],
                "output_dir": tmp,
                "session": {"history": {"mode": "last_k", "last_k": 4}},
                "models": [{"name": "sim", "provider": "simulated", "concurrency": 256}],
            }
        )
        wall = time.perf_counter()
        asyncio.run(collect(s, progress=False))
        collect_s = time.perf_counter() - wall
        rss_collect = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        long = long_table(Path(tmp) / "collection.sqlite")
        wide_table(long)
        tables_s = time.perf_counter() - wall - collect_s
    return {
        "answers": len(long),
        "collect_s": round(collect_s, 2),
        "us_per_answer": round(collect_s / len(long) * 1e6, 1),
        "tables_s": round(tables_s, 2),
        "peak_rss_mb_after_collect": round(rss_collect, 1),
        "peak_rss_mb_with_tables": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--turn-sessions", type=int, default=30, help="per-turn CPU run (0: skip)")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--seconds", type=float, default=15, help="target run length per C")
    parser.add_argument("--answers", type=int, default=100_000, help="memory run size (0: skip)")
    parser.add_argument(
        "--workers",
        nargs="+",
        default=["auto"],
        help="worker processes per run: auto (as vaar collect picks them) or a number; several "
        "to compare (default: auto)",
    )
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after each C, a bare aiohttp client loop on the same server and protocol: the "
        "ratio and CPU no aiohttp client can beat here (default: on)",
    )
    parser.add_argument("--memory-run", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_run:
        print(json.dumps(memory_run(args.memory_run)))
        return

    sys.path.insert(0, str(ROOT))
    from tests.fakes.fake_llm import free_port

    port = free_port()
    server = start_server(port, args.latency)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for c in args.concurrency:
            for w in args.workers:
                workers = None if w == "auto" else int(w)
                row = throughput(url, c, args.latency, args.seconds, workers, server.pid)
                print(
                    f"C={c:4d} L={args.latency * 1000:.0f} ms W={row['workers']}"
                    f"{' (auto)' if w == 'auto' else ''}: {row['requests_per_s']:8.1f} req/s "
                    f"({row['sessions_per_s']:.2f} sessions/s) vs bound C/L = "
                    f"{row['bound_requests_per_s']:.0f} req/s -> ratio "
                    f"{row['ratio_to_bound']:.3f}; client CPU "
                    f"{row['client_cpu_us_per_request']:.0f} us/request (parent "
                    f"{row['parent_cpu_us_per_request']:.0f}); fake server "
                    f"{row['server_cpu_us_per_request']:.0f} us/request ({row['requests']} "
                    f"requests in {row['seconds']} s)",
                    flush=True,
                )
            if args.floor:
                row = bare_client(url, c, args.latency, args.seconds)
                print(
                    f"C={c:4d} L={args.latency * 1000:.0f} ms bare aiohttp loop (the floor): "
                    f"ratio {row['ratio_to_bound']:.3f}; client CPU "
                    f"{row['client_cpu_us_per_request']:.0f} us/request ({row['requests']} "
                    f"requests in {row['seconds']} s)",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(10)
    if args.turn_sessions:
        port = free_port()
        server = start_server(port, 0.0)
        try:
            cpu = per_turn_cpu(f"http://127.0.0.1:{port}/v1", args.turn_sessions)
        finally:
            server.terminate()
            server.wait(10)
        first, last = cpu[1], cpu[TURNS]
        print(
            f"client CPU of one turn (median of {args.turn_sessions} sessions): turn 1 "
            f"{first:.0f} us, turn {TURNS} {last:.0f} us -> ratio {last / first:.2f} "
            f"(turns 2-5: {', '.join(f'{cpu[t]:.0f}' for t in range(2, 6))} us)",
            flush=True,
        )
    if args.answers:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-run", str(args.answers)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{row['answers']} simulated answers: collect {row['collect_s']} s "
            f"({row['us_per_answer']} us/answer), tables {row['tables_s']} s, peak RSS "
            f"{row['peak_rss_mb_after_collect']} MB after collect, "
            f"{row['peak_rss_mb_with_tables']} MB with long+wide tables"
        )


if __name__ == "__main__":
    main()
