"""vaar's collection vs inspect_ai's eval, the same sessions against the same fake server.

Both clients run the demo protocol's sessions (38 one-item turns, iuipc10, psa, aods, each
turn carrying the whole session so far as history) against one fake OpenAI-compatible server
(tests/fakes/fake_llm.py in a process of its own, every reply after L seconds, every answer
"3"), with C sessions in flight, for C = 16, 64, 256. For each C and each client this prints
requests (turns) per second, its ratio to the bound C/L, and the client's CPU per request;
then the ratios vaar / inspect_ai of turns/s and inspect_ai / vaar of CPU per request (issue
15's row "collection vs inspect_ai": vaar ahead on both), the inspect_ai version measured and
the load average (the machine is shared: numbers move with it).

- vaar: `bench_collection.throughput`, exactly as bench/bench_collection.py measures it
  (`collect()` in this process, its worker processes as `vaar collect` picks them, their CPU
  included; whole waves of C sessions for about --seconds).
- inspect_ai: a Task with as many samples as vaar ran sessions, each sample the same system
  prompt and the same 38 user prompts vaar sends (captured from one vaar session against an
  in-process fake), asked by a solver that appends one user message and calls `generate()`
  per turn (the whole conversation as history), through inspect_ai's OpenAI-compatible
  provider (`openai-api/fake/fake`, base_url the fake server), max_connections = C,
  max_samples = C, same max_tokens, inspect_ai's cache off (its default), no scorer, logs in
  a temporary directory, display "none". It runs in a fresh interpreter; its CPU is that
  process's CPU time (all threads) plus its children's during `eval()`; the interpreter
  start and imports are printed apart ("whole process").

inspect_ai is not a dependency of vaar and its releases pin packages vaar's venv has newer
(fsspec, python-dateutil), so it lives in a venv of its own; the run is skipped (exit 0) when
no interpreter with inspect_ai is found (--inspect-python, $VAAR_INSPECT_PYTHON, this
interpreter, .venv/inspect/bin/python, in that order). To set one up:

    /root/.pyenv/versions/3.11.7/bin/python3 -m venv .venv/inspect    # vaar's base Python
    .venv/inspect/bin/pip install inspect_ai

    .venv/bin/python bench/bench_inspect.py                    # C = 16, 64, 256; L = 0.2 s
    .venv/bin/python bench/bench_inspect.py --concurrency 64 --seconds 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SIDE_VENV = ROOT / ".venv" / "inspect" / "bin" / "python"


# -- the inspect_ai side, run in a fresh interpreter (imports no vaar) -----------------------
def fill_total_tokens() -> None:
    """The fake's usage has no total_tokens (OpenAI's always has), which inspect_ai requires:
    fill it in (prompt + completion tokens) before inspect_ai reads a reply, one sum a turn."""
    from inspect_ai.model._providers import openai_compatible

    original = openai_compatible.model_output_from_openai

    def with_total(completion, choices):
        usage = completion.usage
        if usage is not None and usage.total_tokens is None:
            usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        return original(completion, choices)

    openai_compatible.model_output_from_openai = with_total


def inspect_child(spec_path: str) -> None:
    """Run one eval as `spec` says; print one JSON line with wall, CPU and request counts."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    spec = json.loads(Path(spec_path).read_text())
    os.environ.setdefault("FAKE_API_KEY", "dummy")  # openai-api/fake/... reads FAKE_API_KEY

    import inspect_ai
    from inspect_ai import Task, eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import ChatMessageSystem, ChatMessageUser, GenerateConfig, get_model
    from inspect_ai.solver import Generate, TaskState, solver

    imported = time.process_time() - cpu0
    fill_total_tokens()
    turns, requests = spec["turns"], [0]

    @solver
    def session():
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            for n, prompt in enumerate(turns):
                if n:
                    state.messages.append(ChatMessageUser(content=prompt))
                state = await generate(state)
                requests[0] += 1
            return state

        return solve

    samples = [
        Sample(
            id=i + 1,
            input=[ChatMessageSystem(content=spec["system"]), ChatMessageUser(content=turns[0])],
        )
        for i in range(spec["sessions"])
    ]
    c = spec["concurrency"]
    model = get_model(
        "openai-api/fake/fake",
        base_url=spec["url"],
        config=GenerateConfig(max_connections=c, max_tokens=spec["max_tokens"], seed=1),
    )
    task = Task(dataset=MemoryDataset(samples), solver=session())
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu, wall = time.process_time(), time.perf_counter()
    logs = eval(
        task,
        model=model,
        max_samples=c,
        max_tasks=1,
        log_dir=spec["log_dir"],
        display="none",
        score=False,
        fail_on_error=True,
    )
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += after.ru_utime + after.ru_stime - kids.ru_utime - kids.ru_stime
    log = logs[0]
    done = [s for s in log.samples or [] if len(s.messages) == 2 * len(turns) + 1]
    print(
        json.dumps(
            {
                "version": inspect_ai.__version__,
                "status": log.status,
                "error": str(log.error.message) if log.error else None,
                "complete_sessions": len(done),
                "requests": requests[0],
                "seconds": wall,
                "cpu": cpu,
                "import_cpu": imported,
                "process_wall": time.perf_counter() - wall0,
            }
        ),
        flush=True,
    )


# -- the parent: server, vaar side, prompts, comparison -------------------------------------
def inspect_python(given: str | None) -> tuple[str, str] | None:
    """(interpreter, inspect_ai version) of the first candidate that imports inspect_ai."""
    candidates = [given, os.environ.get("VAAR_INSPECT_PYTHON"), sys.executable, SIDE_VENV]
    for py in filter(None, candidates):
        try:
            out = subprocess.run(
                [str(py), "-c", "import inspect_ai; print(inspect_ai.__version__)"],
                capture_output=True,
                text=True,
                timeout=120,
            )
        except OSError:
            continue
        if out.returncode == 0:
            return str(py), out.stdout.strip()
    return None


def vaar_session() -> dict:
    """The system prompt, user prompts and max_tokens of one vaar session of the bench study,
    as vaar sends them (one session against an in-process fake, its request bodies kept)."""
    import asyncio

    import bench_collection

    from tests.fakes.fake_llm import FakeLLM
    from vaar.collection import collect

    with FakeLLM(fixed_answer="3") as fake, tempfile.TemporaryDirectory() as tmp:
        study = bench_collection.study(Path(tmp), fake.base_url, 1, 1)
        asyncio.run(collect(study, progress=False))
        body = max(fake.bodies, key=lambda b: len(b["messages"]))
    messages = body["messages"]
    turns = [m["content"] for m in messages if m["role"] == "user"]
    if len(turns) != bench_collection.TURNS or messages[0]["role"] != "system":
        raise RuntimeError(f"unexpected vaar session: {len(turns)} user turns")
    return {"system": messages[0]["content"], "turns": turns, "max_tokens": body["max_tokens"]}


def vaar_row(url: str, c: int, latency: float, seconds: float, server_pid: int) -> dict:
    """bench_collection.throughput, with whatever it takes besides url, C, L and seconds
    (worker processes as `vaar collect` picks them; the server's pid for its CPU)."""
    import inspect as pyinspect

    import bench_collection

    extra = {"workers": None, "server": server_pid}
    params = pyinspect.signature(bench_collection.throughput).parameters
    extra = {k: v for k, v in extra.items() if k in params}
    return bench_collection.throughput(url, c, latency, seconds, **extra)


def inspect_row(py: str, url: str, c: int, sessions: int, session: dict, server_pid: int):
    """One inspect_ai eval of `sessions` sessions in a fresh interpreter, its numbers."""
    from bench_collection import children_cpu, process_cpu

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(
            json.dumps(
                {"url": url, "concurrency": c, "sessions": sessions, "log_dir": tmp, **session}
            )
        )
        kids, served = children_cpu(), process_cpu(server_pid)
        out = subprocess.run(
            [py, __file__, "--inspect-child", str(spec)], capture_output=True, text=True
        )
        kids, served = children_cpu() - kids, process_cpu(server_pid) - served
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"inspect_ai run failed (exit {out.returncode}): {tail}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if row["status"] != "success" or row["complete_sessions"] != sessions:
        raise RuntimeError(
            f"inspect_ai run incomplete: status {row['status']}, "
            f"{row['complete_sessions']}/{sessions} sessions, {row['error']}"
        )
    row["process_cpu"] = kids
    row["server_cpu"] = served
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--seconds", type=float, default=15, help="target vaar run length per C")
    parser.add_argument("--inspect-python", help="an interpreter with inspect_ai installed")
    parser.add_argument("--inspect-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inspect_child:
        inspect_child(args.inspect_child)
        return

    found = inspect_python(args.inspect_python)
    if found is None:
        print(
            "bench_inspect: skipped, inspect_ai is not importable (no --inspect-python, "
            "$VAAR_INSPECT_PYTHON, this interpreter or .venv/inspect; see the docstring)"
        )
        return
    py, version = found
    sys.path[:0] = [str(BENCH), str(ROOT)]
    import bench_collection

    from tests.fakes.fake_llm import free_port

    session = vaar_session()
    chars = sum(map(len, session["turns"]))
    print(
        f"inspect_ai {version} ({py}) vs vaar; sessions of {len(session['turns'])} turns "
        f"({chars} characters of user prompts), whole history; L = {args.latency * 1000:.0f} ms; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start",
        flush=True,
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    server = bench_collection.start_server(port, args.latency)
    rows = []
    try:
        for c in args.concurrency:
            bound = c / args.latency
            load = os.getloadavg()[0]
            v = vaar_row(url, c, args.latency, args.seconds, server.pid)
            workers = f" W={v['workers']}" if "workers" in v else ""
            print(
                f"C={c:4d} vaar{workers}: {v['requests_per_s']:8.1f} turns/s = "
                f"{v['ratio_to_bound']:.3f} of C/L = {bound:.0f}; client CPU "
                f"{v['client_cpu_us_per_request']:.0f} us/request ({v['requests']} requests "
                f"in {v['seconds']} s; load average {load:.2f})",
                flush=True,
            )
            load = os.getloadavg()[0]
            i = inspect_row(py, url, c, v["sessions"], session, server.pid)
            i_rate, i_cpu = i["requests"] / i["seconds"], i["cpu"] / i["requests"] * 1e6
            print(
                f"C={c:4d} inspect_ai: {i_rate:8.1f} turns/s = {i_rate / bound:.3f} of C/L; "
                f"client CPU {i_cpu:.0f} us/request during eval() (whole process "
                f"{i['process_cpu'] / i['requests'] * 1e6:.0f}, imports {i['import_cpu']:.1f} s "
                f"CPU); fake server {i['server_cpu'] / i['requests'] * 1e6:.0f} us/request "
                f"({i['requests']} requests in {i['seconds']:.1f} s; load average {load:.2f})",
                flush=True,
            )
            speed = v["requests_per_s"] / i_rate
            cpu = i_cpu / v["client_cpu_us_per_request"]
            rows.append((c, speed, cpu))
            print(
                f"C={c:4d} vaar / inspect_ai: {speed:.1f}x the turns/s, 1/{cpu:.1f} of the CPU "
                "per request",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(10)
    print(
        f"summary (inspect_ai {version}, load average {os.getloadavg()[0]:.2f} at end): "
        + "; ".join(f"C={c}: {s:.1f}x turns/s, 1/{p:.1f} CPU/request" for c, s, p in rows)
    )


if __name__ == "__main__":
    main()
