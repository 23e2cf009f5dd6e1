"""Run a real `vaar serve` in a subprocess on a loopback port and talk to it: shared by
tests/test_service*.py and bench/bench_service.py (no mocks: real HTTP, real R workers)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp

VAAR = str(Path(sys.executable).with_name("vaar"))
HS_MODEL = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9"
HS_VARIABLES = [f"x{i}" for i in range(1, 10)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`vaar serve` as a child process; `start()` waits until an R worker is ready."""

    def __init__(self, data_dir: Path, *args: str, env: dict | None = None):
        self.data_dir = Path(data_dir)
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120, *, wait_for_workers: bool = True) -> Server:
        """Start and wait until the server answers (and, by default, until an R worker is
        ready: warming R takes a few seconds, more on a busy machine)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        cmd = [VAAR, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        self.process = subprocess.Popen(
            [*cmd, *self.args], stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vaar serve exited: {self.log_tail()}")
            try:
                if self.health()["status"] == "ok" or not wait_for_workers:
                    return self
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        self.stop()  # a `with` block never reaches __exit__ when start fails: no orphan server
        raise TimeoutError(f"vaar serve not ready in {timeout} s: {self.log_tail()}")

    def health(self) -> dict:
        with urllib.request.urlopen(self.base + "/api/health", timeout=5) as response:
            return json.load(response)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait(10)
        return self.process.returncode if self.process else 0

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def worker_pid(self) -> int:
        return self.health()["workers"][0]["pid"]

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def form(
    data: bytes,
    *,
    filename: str = "data.csv",
    group: str | None = None,
    model: str | None = None,
    study: str | None = None,
) -> aiohttp.FormData:
    fd = aiohttp.FormData()
    fd.add_field("data", data, filename=filename, content_type="text/csv")
    if group is not None:
        fd.add_field("group", group)
    if model is not None:
        fd.add_field("model", model)
    if study is not None:
        fd.add_field("study", study.encode(), filename="study.toml", content_type="text/plain")
    return fd


async def submit(session: aiohttp.ClientSession, base: str, fd, headers=None) -> tuple[int, dict]:
    async with session.post(base + "/api/analyses", data=fd, headers=headers) as response:
        return response.status, await response.json()


async def wait_job(
    session: aiohttp.ClientSession,
    base: str,
    job_id: str,
    *,
    timeout: float = 120,
    until=("done", "failed", "cancelled"),
    headers=None,
    interval: float = 0.2,
) -> dict:
    deadline = time.monotonic() + timeout
    job = {"status": "unknown"}
    while time.monotonic() < deadline:
        async with session.get(f"{base}/api/analyses/{job_id}", headers=headers) as response:
            if response.status == 429:  # polled too fast: wait as told
                await asyncio.sleep(float(response.headers.get("Retry-After", 1)))
                continue
            if response.status != 200:
                raise RuntimeError(f"GET job {job_id}: {response.status} {await response.text()}")
            job = await response.json()
        if job["status"] in until:
            return job
        await asyncio.sleep(interval)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")


def export_holzinger(path: Path) -> Path:
    """lavaan's HolzingerSwineford1939 as CSV (301 pupils, two schools, x1..x9)."""
    script = (
        "library(lavaan); "
        "write.csv(HolzingerSwineford1939, commandArgs(TRUE)[1], row.names = FALSE)"
    )
    subprocess.run(["Rscript", "-e", script, str(path)], check=True, capture_output=True)
    return path
