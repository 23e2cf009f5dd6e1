"""`vaar serve` under load: N concurrent clients upload, poll and fetch estimates over real HTTP.

Prints the throughput against the single-worker bound (1 / mean job time when jobs run one
at a time), p50/p95 latency from upload to a finished job, and checks that no job is lost:
every accepted upload ends `done` with its estimates, and the server's job store holds
exactly the accepted jobs, all done.

    .venv/bin/python bench/bench_service.py --clients 8 --jobs-per-client 3 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pandas as pd

from vaar.service.testing import HS_MODEL, Server, export_holzinger, form, submit, wait_job

MODELS = {"one-factor": "visual =~ x1 + x2 + x3", "three-factor": HS_MODEL}


async def one_job(session, base: str, data: bytes, model: str) -> tuple[float, dict]:
    """Upload, wait until finished, fetch the estimates; return (latency, job)."""
    started = time.perf_counter()
    status, job = await submit(session, base, form(data, group="school", model=model))
    if status != 202:
        raise RuntimeError(f"upload refused: {status} {job}")
    job = await wait_job(session, base, job["id"], timeout=3600)
    if job["status"] == "done":
        async with session.get(base + job["links"]["estimates"]) as response:
            estimates = await response.json()
        if not estimates["estimates"]:
            raise RuntimeError(f"job {job['id']} finished without estimates")
    return time.perf_counter() - started, job


async def run(args, base: str, data: list[bytes], model: str) -> dict:
    async with aiohttp.ClientSession() as session:
        # warm-up, then the single-worker bound: jobs strictly one after another
        await one_job(session, base, data[0], model)
        serial = [
            (await one_job(session, base, data[i % len(data)], model))[0]
            for i in range(args.serial_jobs)
        ]
        per_job = statistics.mean(serial)

        async def client(c: int) -> list[tuple[float, dict]]:
            return [
                await one_job(session, base, data[(c + j) % len(data)], model)
                for j in range(args.jobs_per_client)
            ]

        started = time.perf_counter()
        results = await asyncio.gather(*(client(c) for c in range(args.clients)))
        wall = time.perf_counter() - started
        async with session.get(base + "/api/health") as response:
            counts = (await response.json())["jobs"]
    runs = [r for per_client in results for r in per_client]
    latencies = sorted(latency for latency, _ in runs)
    jobs = [job for _, job in runs]
    return {
        "per_job": per_job,
        "wall": wall,
        "jobs": jobs,
        "latencies": latencies,
        "counts": counts,
    }


def percentile(sorted_values: list[float], q: float) -> float:
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs-per-client", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--serial-jobs", type=int, default=3)
    parser.add_argument("--model", choices=sorted(MODELS), default="one-factor")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        hs = pd.read_csv(export_holzinger(Path(tmp) / "hs.csv"))
        # a few distinct tables (one row left out each), as different users would send
        data = [hs.drop(index=i).to_csv(index=False).encode() for i in range(5)]
        server = Server(
            Path(tmp) / "data",
            "--workers",
            str(args.workers),
            "--uploads-per-minute",
            "100000",
            "--requests-per-minute",
            "1000000",
        )
        with server:
            r = asyncio.run(run(args, server.base, data, MODELS[args.model]))

    total = args.clients * args.jobs_per_client
    done = [j for j in r["jobs"] if j["status"] == "done"]
    lost = total - len(done)
    accepted = 1 + args.serial_jobs + total  # warm-up, serial, concurrent
    stored = sum(r["counts"].values())
    bound = 1 / r["per_job"]  # one worker, never idle, no overhead
    rate = total / r["wall"]
    print(
        f"model: {args.model}; R workers: {args.workers}; "
        f"{args.clients} clients x {args.jobs_per_client} jobs = {total} jobs"
    )
    print(f"one job at a time: {r['per_job']:.2f} s per job (mean of {args.serial_jobs})")
    print(f"single-worker bound (1 / job time): {bound:.3f} jobs/s")
    print(
        f"measured: {rate:.3f} jobs/s in {r['wall']:.1f} s = {rate / bound:.2f} x the "
        f"single-worker bound (at most {args.workers} x with {args.workers} worker(s), "
        "fewer when the workers share the cores)"
    )
    print(
        f"latency upload -> done: p50 {percentile(r['latencies'], 50):.2f} s, "
        f"p95 {percentile(r['latencies'], 95):.2f} s, max {r['latencies'][-1]:.2f} s"
    )
    print(
        f"jobs done: {len(done)}/{total}; lost or failed: {lost}; "
        f"server's job store: {stored} jobs ({r['counts']}) for {accepted} accepted"
    )
    for reason, n in Counter(j["error"] for j in r["jobs"] if j["status"] != "done").items():
        print(f"  {n} x {reason}")
    if lost or stored != accepted or r["counts"].get("done") != accepted:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
