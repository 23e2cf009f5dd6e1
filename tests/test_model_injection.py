"""R code in a lavaan model is refused at every entry point before any R sees it: `vaar serve`
over real HTTP on loopback (422, no checker process started, no job), `vaar analyze --model`
and `vaar sem-fit` (exit 2, one line), the batch runner and the reproduction-bundle writer.
Each payload would create a canary file (tests/fakes/injection.py; tests/test_sem_grammar.py
shows plain lavaan runs them); every canary stays absent. The service's R workers run with a
minimal environment in a private directory."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pandas as pd
import pytest
from click.testing import CliRunner
from fakes.fixtures import ladder_call
from fakes.injection import FAMILIES, hostile_models

from vaar.cli import main as cli
from vaar.sem import write_bundle
from vaar.sem.grammar import ModelSyntaxError
from vaar.sem.worker import WORKER_PREFIXES, WORKER_VARIABLES
from vaar.service.testing import (
    HS_MODEL,
    VAAR,
    Server,
    export_holzinger,
    form,
    submit,
    wait_job,
)

SECRETS = {"OPENAI_API_KEY": "sk-canary-openai", "AWS_SECRET_ACCESS_KEY": "canary-aws-secret",
           "VAAR_TOKEN": "canary-token-0123456789"}  # fmt: skip
AUTH = {"Authorization": f"Bearer {SECRETS['VAAR_TOKEN']}"}
ONE_FACTOR = "visual =~ x1 + x2 + x3"
# a few positions per family for the in-process entry points (the grammar tests do them all)
SOME_POSITIONS = ("=~ modifier", "left-hand modifier", ":= right-hand side", "< left", "c()")


@pytest.fixture(scope="module")
def hs_csv(tmp_path_factory) -> Path:
    return export_holzinger(tmp_path_factory.mktemp("hs") / "hs.csv")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One R worker; secrets in the server's environment (and its token)."""
    srv = Server(
        tmp_path_factory.mktemp("svc") / "data",
        *("--uploads-per-minute", "100000", "--requests-per-minute", "1000000"),
        env=SECRETS,
    )
    with srv:
        yield srv


def canaries(directory: Path) -> list[str]:
    return sorted(p.name for p in Path(directory).glob("canary_*"))


def tiny_table(hs_csv: Path) -> bytes:
    hs = pd.read_csv(hs_csv)
    return hs.groupby("school").head(10).to_csv(index=False).encode()  # both schools


# the service ---------------------------------------------------------------------------------
async def test_service_refuses_every_injection_with_422_before_any_r(server, hs_csv, tmp_path):
    hostile = hostile_models(tmp_path)
    data = tiny_table(hs_csv)
    assert server.health()["checker"] == {"pid": None, "state": "stopped"}

    async def one(session, model):
        fd = form(data, group="school", model=model)
        return await submit(session, server.base, fd, headers=AUTH)

    async with aiohttp.ClientSession() as session:
        keys = list(hostile)
        answers = []
        for start in range(0, len(keys), 25):  # 25 uploads at a time
            batch = keys[start : start + 25]
            answers += await asyncio.gather(*(one(session, hostile[k][0]) for k in batch))
        for key, (status, body) in zip(keys, answers, strict=True):
            assert (status, body["status"]) == (422, 422), (key, body)
            assert body["error"].startswith(f"model, line {hostile[key][1]}: "), (key, body)
            assert "Traceback" not in body["error"]
        # lavaan's checker process was never started, no job was created, nothing ran
        assert server.health()["checker"] == {"pid": None, "state": "stopped"}
        async with session.get(server.base + "/api/analyses", headers=AUTH) as response:
            assert (await response.json())["analyses"] == []
        assert not (server.data_dir / "jobs").exists() or not any(
            (server.data_dir / "jobs").iterdir()
        )
        assert canaries(tmp_path) == []
        assert {k[0] for k in keys} == set(FAMILIES)

        # the control: a legitimate model reaches lavaan's checker and is queued
        status, job = await one(session, ONE_FACTOR)
        assert status == 202, job
        assert server.health()["checker"]["state"] in ("idle", "busy")


@pytest.mark.slow
async def test_r_workers_see_no_secrets_and_run_in_a_private_directory(server, hs_csv):
    async with aiohttp.ClientSession() as session:
        status, job = await submit(
            session, server.base, form(hs_csv.read_bytes(), group="school", model=ONE_FACTOR),
            headers=AUTH,
        )  # fmt: skip
        assert status == 202, job
        job = await wait_job(session, server.base, job["id"], headers=AUTH, timeout=180)
        assert job["status"] == "done", job["error"]
    health = server.health()
    pids = [w["pid"] for w in health["workers"]] + [health["checker"]["pid"]]
    server_env = environ(server.process.pid)
    assert set(SECRETS.items()) <= set(server_env.items())  # the server has them
    homes = []
    for pid in pids:
        env = environ(pid)
        allowed = {k for k in env if k in WORKER_VARIABLES or k.startswith(WORKER_PREFIXES)}
        assert set(env) - allowed == {"HOME", "TMPDIR"}, sorted(env)
        leaked = [k for k, v in env.items() if any(s in v for s in SECRETS.values())]
        assert leaked == [] and not set(SECRETS) & set(env)
        home = Path(env["HOME"])
        assert env["TMPDIR"] == str(home) == os.readlink(f"/proc/{pid}/cwd")
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert home != Path(os.readlink(f"/proc/{server.process.pid}/cwd"))
        homes.append(home)
    assert len(set(homes)) == len(pids)  # one directory each

    # a worker killed from outside while R's forks fit the levels (one worker on two cores
    # forks): the job fails at once, the forks end, the directory goes, the restart gets a new one
    async with aiohttp.ClientSession() as session:
        upload = form(hs_csv.read_bytes(), group="school", model=HS_MODEL)
        _, job = await submit(session, server.base, upload, headers=AUTH)
        await wait_job(session, server.base, job["id"], until=("running",), headers=AUTH)
        (worker,) = [w for w in server.health()["workers"] if w["job"] == job["id"]]
        children = Path(f"/proc/{worker['pid']}/task/{worker['pid']}/children")
        for _ in range(600):
            if children.read_text().split():
                break
            await asyncio.sleep(0.02)
        assert children.read_text().split(), "no forked R process to orphan"
        os.kill(worker["pid"], signal.SIGKILL)
        job = await wait_job(session, server.base, job["id"], headers=AUTH, timeout=20)
    assert job["status"] == "failed" and "killed by signal SIGKILL" in job["error"]
    for _ in range(240):
        after = server.health()["workers"][0]
        if after["state"] == "idle" and after["pid"] not in (None, worker["pid"]):
            break
        await asyncio.sleep(0.5)
    old_home = homes[pids.index(worker["pid"])]
    assert not old_home.exists()
    assert Path(environ(after["pid"])["HOME"]).is_dir()
    with pytest.raises(ProcessLookupError):  # the orphaned forks were ended with the group
        os.killpg(worker["pid"], 0)


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


# the command line, the batch runner, the bundle writer ---------------------------------------
def hostile_files(tmp_path: Path, positions=SOME_POSITIONS):
    for (family, position), (model, line, _) in hostile_models(tmp_path).items():
        if position in positions:
            path = tmp_path / f"m{abs(hash((family, position)))}.lav"
            path.write_text(model)
            yield (family, position), path, line


@pytest.mark.parametrize("command", ["analyze", "sem-fit"])
def test_cli_refuses_every_family_with_exit_2_and_one_line(command, hs_csv, tmp_path):
    runner = CliRunner()
    seen = set()
    for key, path, line in hostile_files(tmp_path):
        args = {
            "analyze": ["analyze", str(hs_csv), "--model", str(path), "--group", "school",
                        "--out", str(tmp_path / "out")],
            "sem-fit": ["sem-fit", str(hs_csv), "--model", str(path), "--group", "school",
                        "--out", str(tmp_path / "out")],
        }[command]  # fmt: skip
        done = runner.invoke(cli, args)
        assert done.exit_code == 2, (key, done.output)
        assert done.stderr.startswith(f"error: --model {path}, line {line}: "), key
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.output
        seen.add(key[0])
    assert seen == set(FAMILIES)
    assert canaries(tmp_path) == [] and not (tmp_path / "out").exists()


def test_the_real_executable_exits_2_with_one_line(hs_csv, tmp_path):
    (key, path, line), *_ = hostile_files(tmp_path, positions=(":= right-hand side",))
    for command in ("analyze", "sem-fit"):
        cmd = [VAAR, command, str(hs_csv), "--model", str(path), "--group", "school",
               "--out", str(tmp_path / "out")]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: --model {path}, line {line}: function ")
        assert done.stderr.count("\n") == 1
    assert canaries(tmp_path) == []


def test_batch_runner_records_the_refusal_per_study(hs_csv, tmp_path):
    from vaar.data.inputs import Job
    from vaar.pipeline import run_jobs

    lines = []
    for key, path, line in hostile_files(tmp_path, positions=("=~ modifier", "== right")):
        job = Job("hs", hs_csv, None, hs_csv)
        (outcome,) = run_jobs([job], tmp_path / "out", user_model=(path.read_text(), "school"),
                              echo=lines.append)  # fmt: skip
        assert not outcome.ok and outcome.error.startswith(
            f"invalid lavaan model syntax, line {line}: "
        ), (key, outcome.error)
    assert canaries(tmp_path) == [] and not any("Traceback" in x for x in lines)


def test_bundle_writer_refuses_a_model_it_cannot_vouch_for(tmp_path):
    data = pd.DataFrame({"g": ["a", "b"], "x1": [1.0, 2.0]})
    for _, path, line in hostile_files(tmp_path):
        call = ladder_call(path.read_text(), group="g")
        sem = SimpleNamespace(call=call, data=data, to_dict=dict)
        with pytest.raises(ModelSyntaxError, match=f"^the model to reproduce, line {line}: "):
            write_bundle(tmp_path / "bundle", sem)
    assert not (tmp_path / "bundle").exists() and canaries(tmp_path) == []
    # a legitimate model is written as checked: one statement per line, no comments
    call = ladder_call("f =~ x1 + # c\n x2; g =~ x3 + x4", group="g")
    write_bundle(tmp_path / "bundle", SimpleNamespace(call=call, data=data, to_dict=dict))
    assert (tmp_path / "bundle" / "model.lav").read_text() == "f =~ x1 + x2\ng =~ x3 + x4\n"
