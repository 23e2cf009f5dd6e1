"""The checks `make image-test` runs against the built image (scripts/image-test.sh builds it and
calls this with the host's venv): the README's Docker commands run for real with podman, and the
container's numbers compared with the same analyses run here by the host's vaar.

    python scripts/image_check.py IMAGE WORKDIR

Every container is started with a --cidfile in WORKDIR, so scripts/image-test.sh's exit trap
removes them all by id. Each check prints one `ok` line, or the run stops with one `FAILED` line.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from itertools import count
from pathlib import Path

import aiohttp

from vaar.alignment.simulate import simulate_wide
from vaar.instruments import load_instrument
from vaar.service.testing import (
    HS_MODEL,
    VAAR,
    Server,
    export_holzinger,
    form,
    free_port,
    submit,
    wait_job,
)

UID = "10001"  # the Dockerfile's USER
TOLERANCE = 1e-6  # the same R, lavaan and OpenBLAS inside and out (measured: equal)
STUDY = """name = "study"
sessions_per_model = 100
instruments = ["iuipc10", "psa", "aods"]
[analysis]
estimator = "ML"
levels = ["configural"]
missing = "listwise"
[[models]]
name = "sim-aligned"
provider = "simulated"
[[models]]
name = "sim-reversed"
provider = "simulated"
"""
PLANTED = {"sim-aligned": (-0.6, 0.6), "sim-reversed": (0.6, -0.6)}
OWNERS = [(0, 0), (1000, 1000)]  # a folder of root's, and of a typical first user's


class CheckFailed(Exception):
    pass


def ok(message: str) -> None:
    print(f"[image-test] ok: {message}", flush=True)


def output(res: subprocess.CompletedProcess, n: int = 3000) -> str:
    """The end of what a command said, without podman's complaint that, lacking systemd, it
    cannot schedule the periodic health check (wait_healthy runs the check itself)."""
    lines = (res.stdout + res.stderr).strip().splitlines()
    return "\n".join(x for x in lines if "unable to get systemd connection" not in x)[-n:]


class Podman:
    def __init__(self, image: str, work: Path):
        self.image, self.work, self._n = image, work, count(1)

    def __call__(self, *args: str, timeout: float, check: bool = True):
        try:
            res = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"`podman {' '.join(args)}` did not finish in {timeout} s") from None
        if check and res.returncode != 0:
            raise CheckFailed(f"`podman {' '.join(args)}` exited {res.returncode}: {output(res)}")
        return res

    def run(self, *args: str, timeout: float, check: bool = True):
        """`podman run ARGS` with the image given by the caller inside ARGS."""
        cidfile = self.work / f"container-{next(self._n)}.cid"
        return self("run", "--cidfile", str(cidfile), *args, timeout=timeout, check=check)

    def logs(self, cid: str) -> str:
        return "container log:\n" + output(self("logs", cid, timeout=60, check=False))


def numbers(doc: dict) -> dict:
    """What must agree: every lavaan estimate (est, se, std.all) and every VAAR score."""
    out = {}
    for r in doc["estimates"]:
        key = (r["level"], r["group"], r["lhs"], r["op"], r["rhs"])
        out.update({(*key, f): r.get(f) for f in ("est", "se", "std_all")})
    for r in (doc.get("alignment") or {}).get("scores", []):
        out.update({("vaar", r["model"], f): r.get(f) for f in ("vaar_soft", "vaar_hard")})
    return out


def same_numbers(inside: dict, outside: dict, what: str) -> None:
    a, b = numbers(inside), numbers(outside)
    if a.keys() != b.keys():
        raise CheckFailed(f"{what}: other parameters outside: {sorted(a.keys() ^ b.keys())[:5]}")
    worst = 0.0
    for key in a:
        if a[key] is None or b[key] is None:
            diff = 0.0 if a[key] is b[key] else float("inf")
        else:
            diff = abs(a[key] - b[key])
        if diff > TOLERANCE:
            raise CheckFailed(f"{what}: {key} is {a[key]} in the container, {b[key]} outside")
        worst = max(worst, diff)
    ok(f"{what}: {len(a)} numbers equal to the host's (largest difference {worst:.1e})")


def check_user_and_version(podman: Podman) -> None:
    uid = podman.run("--rm", "--entrypoint", "id", podman.image, "-u", timeout=120).stdout.strip()
    if uid != UID:
        raise CheckFailed(f"the container runs as uid {uid}, not {UID}")
    ok(f"runs as uid {uid}")
    inside = podman.run("--rm", podman.image, "--version", timeout=120).stdout.strip()
    outside = subprocess.run([VAAR, "--version"], capture_output=True, text=True).stdout.strip()
    if inside != outside:
        raise CheckFailed(f"vaar --version: {inside!r} in the container, {outside!r} outside")
    ok(f"vaar --version: {inside}")


def wait_healthy(podman: Podman, cid: str, timeout: float = 300) -> float:
    """Run the image's HEALTHCHECK command until it passes; seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        state = podman("inspect", "--format", "{{.State.Status}}", cid, timeout=60).stdout.strip()
        if state != "running":
            raise CheckFailed(f"vaar serve {state} before it was healthy; {podman.logs(cid)}")
        if podman("healthcheck", "run", cid, timeout=60, check=False).returncode == 0:
            return time.monotonic() - start
        time.sleep(2)
    raise CheckFailed(f"the HEALTHCHECK did not pass in {timeout} s; {podman.logs(cid)}")


async def round_trip(base: str, data: bytes) -> dict:
    """Upload HolzingerSwineford1939 with the three-factor model, wait, fetch report and numbers."""
    async with aiohttp.ClientSession() as session:
        status, job = await submit(session, base, form(data, group="school", model=HS_MODEL))
        if status != 202:
            raise CheckFailed(f"upload to {base}: {status} {job}")
        job = await wait_job(session, base, job["id"], timeout=600)
        if job["status"] != "done":
            raise CheckFailed(f"job at {base}: {job['status']}: {job.get('error')}")
        async with session.get(base + job["links"]["report"]) as response:
            page = await response.text()
            if response.status != 200 or "<html" not in page:
                raise CheckFailed(f"report at {base}: {response.status} {page[:200]}")
        async with session.get(base + job["links"]["estimates"]) as response:
            return await response.json()


def check_service(podman: Podman, hs_csv: Path) -> None:
    """The README's `docker run -p 127.0.0.1:PORT:8080 vaar serve --host 0.0.0.0`."""
    port = free_port()
    cid = podman.run(
        *("--detach", "--publish", f"127.0.0.1:{port}:8080"),
        *(podman.image, "serve", "--host", "0.0.0.0"),
        timeout=120,
    ).stdout.strip()
    took = wait_healthy(podman, cid)
    status = podman("inspect", "--format", "{{.State.Health.Status}}", cid, timeout=60)
    ok(f"HEALTHCHECK passes after {took:.0f} s; podman inspect says {status.stdout.strip()}")
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(base + "/api/health", timeout=10) as response:
        health = json.load(response)
    if health["status"] != "ok":
        raise CheckFailed(f"{base}/api/health: {health}")
    ok(f"{base}/api/health answers on the published loopback port: {health['status']}")

    data = hs_csv.read_bytes()
    try:
        inside = asyncio.run(round_trip(base, data))
    except (CheckFailed, TimeoutError) as exc:
        raise CheckFailed(f"{exc}; {podman.logs(cid)}") from None
    with Server(podman.work / "host-service") as server:
        outside = asyncio.run(round_trip(server.base, data))
    same_numbers(inside, outside, "upload -> job -> report in the container")

    podman("stop", "--time", "30", cid, timeout=60)
    code = podman("inspect", "--format", "{{.State.ExitCode}}", cid, timeout=60).stdout.strip()
    if code != "0":
        raise CheckFailed(f"vaar serve exited {code} on docker stop; {podman.logs(cid)}")
    ok("docker stop: vaar serve shuts down on SIGTERM with exit code 0")


def check_study_folder(podman: Podman, owner: tuple[int, int], host_doc: dict) -> None:
    """The README's `docker run --rm --user "$(id -u):$(id -g)" -v "$PWD":/work vaar analyze
    /work/study`, run by the folder's OWNER (uid, gid): without --user, uid 10001 may not write."""
    here = podman.work / f"here-{owner[0]}"
    shutil.copytree(podman.work / "study", here / "study")
    for path in (here, *here.rglob("*")):
        os.chown(path, *owner)
    mount = ("--volume", f"{here}:/work")
    analyze = (podman.image, "analyze", "/work/study")

    res = podman.run("--rm", *mount, *analyze, timeout=600, check=False)
    if res.returncode == 0 or (here / "reports").exists():
        raise CheckFailed(f"uid {UID} wrote into a folder owned by uid {owner[0]}: {output(res)}")
    said = output(res).splitlines()[-1].strip()
    if "Permission denied" not in said or "Traceback" in output(res):
        raise CheckFailed(f"not the documented one-line Permission denied error: {output(res)}")
    ok(f"folder owned by uid {owner[0]}, no --user: exit {res.returncode}, {said!r}")

    user = f"{owner[0]}:{owner[1]}"
    res = podman.run("--rm", "--user", user, *mount, *analyze, timeout=600)
    report = here / "reports" / "study"
    if not (report / "index.html").is_file():
        raise CheckFailed(f"no {report}/index.html after `vaar analyze`: {output(res)}")
    if (report / "estimates.json").stat().st_uid != owner[0]:
        raise CheckFailed(f"{report}/estimates.json is not owned by uid {owner[0]}")
    ok(f"--user {user}: reports/study/ written into the folder, owned by uid {owner[0]}")
    doc = json.loads((report / "estimates.json").read_text(encoding="utf-8"))
    same_numbers(doc, host_doc, f"vaar analyze on the mounted folder (uid {owner[0]})")


def host_study(work: Path) -> dict:
    """A study folder (study.toml + a wide answers.csv) and the host's vaar analyze of it."""
    (work / "study").mkdir()
    (work / "study" / "study.toml").write_text(STUDY, encoding="utf-8")
    instruments = [load_instrument(i) for i in ("iuipc10", "psa", "aods")]
    table = simulate_wide(PLANTED, instruments, sessions=100, seed=4)
    table.to_csv(work / "study" / "answers.csv", index=False)
    cmd = [VAAR, "analyze", str(work / "study"), "--out", str(work / "host-reports")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise CheckFailed(f"the host's vaar analyze failed: {output(res)}")
    return json.loads((work / "host-reports" / "study" / "estimates.json").read_text("utf-8"))


def main() -> int:
    image, work = sys.argv[1], Path(sys.argv[2])
    podman = Podman(image, work)
    try:
        check_user_and_version(podman)
        check_service(podman, export_holzinger(work / "hs.csv"))
        host_doc = host_study(work)
        for owner in OWNERS:
            check_study_folder(podman, owner, host_doc)
    except (CheckFailed, TimeoutError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"[image-test] FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
