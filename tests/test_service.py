"""`vaar serve` over real HTTP on loopback: a real server process, real R workers, real lavaan.

The reference estimates come from plain Rscript + lavaan, not from the code under test.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import zipfile
from pathlib import Path

import aiohttp
import pandas as pd
import pytest

from vaar.service.testing import (
    HS_MODEL,
    VAAR,
    Server,
    export_holzinger,
    form,
    submit,
    wait_job,
)

ONE_FACTOR = "visual =~ x1 + x2 + x3"
SIMULTANEOUS = 20
TOKEN = "s3cret-token-for-tests"

REFERENCE_R = """
library(lavaan)
args <- commandArgs(TRUE)
d <- read.csv(args[1])
model <- paste(readLines(args[2]), collapse = "\n")
n <- as.integer(args[4])
out <- do.call(rbind, lapply(seq_len(n), function(i) {
  fit <- sem(model, data = d[-i, ], group = "school", estimator = "MLR")
  pe <- parameterEstimates(fit)
  pe$group <- lavInspect(fit, "group.label")[pe$group]
  pe$variant <- i
  pe[, c("variant", "group", "lhs", "op", "rhs", "est", "se")]
}))
write.csv(out, args[3], row.names = FALSE)
"""


@pytest.fixture(scope="session")
def hs_csv(tmp_path_factory) -> Path:
    return export_holzinger(tmp_path_factory.mktemp("hs") / "hs.csv")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One shared server: two R workers (the test machine has two cores), a 1 MiB upload limit,
    rate limits out of the way (the guarded server below tests them)."""
    with Server(
        tmp_path_factory.mktemp("svc") / "data",
        *("--workers", "2", "--max-upload-mb", "1"),
        *("--uploads-per-minute", "1000", "--requests-per-minute", "100000"),
    ) as srv:
        yield srv


def variant(hs: pd.DataFrame, i: int) -> bytes:
    """The HolzingerSwineford data without row i (1-based): each upload has its own answer."""
    return hs.drop(index=i - 1).to_csv(index=False).encode()


def reference_estimates(tmp: Path, hs_csv: Path, model: str, n: int) -> pd.DataFrame:
    (tmp / "model.lav").write_text(model)
    (tmp / "ref.R").write_text(REFERENCE_R)
    out = tmp / "ref.csv"
    cmd = ["Rscript", str(tmp / "ref.R"), str(hs_csv), str(tmp / "model.lav"), str(out), str(n)]
    subprocess.run(cmd, check=True, capture_output=True)
    return pd.read_csv(out, keep_default_na=False)  # intercepts have rhs "", not NaN


def configural(estimates: dict) -> pd.DataFrame:
    rows = pd.DataFrame(estimates["estimates"]).fillna({"rhs": ""})
    return rows[rows["level"] == "configural"]


# the 20 simultaneous uploads ---------------------------------------------------------------
@pytest.mark.slow
async def test_simultaneous_uploads_all_finish_with_lavaans_estimates(server, hs_csv, tmp_path):
    hs = pd.read_csv(hs_csv)
    reference = reference_estimates(tmp_path, hs_csv, ONE_FACTOR, SIMULTANEOUS)
    async with aiohttp.ClientSession() as session:
        uploads = [
            submit(session, server.base, form(variant(hs, i), group="school", model=ONE_FACTOR))
            for i in range(1, SIMULTANEOUS + 1)
        ]
        accepted = await asyncio.gather(*uploads)
        assert [status for status, _ in accepted] == [202] * SIMULTANEOUS
        ids = [job["id"] for _, job in accepted]
        assert len(set(ids)) == SIMULTANEOUS
        jobs = await asyncio.gather(
            *(wait_job(session, server.base, job_id, timeout=300) for job_id in ids)
        )
        assert [(j["status"], j["error"]) for j in jobs] == [("done", None)] * SIMULTANEOUS
        for i, job in enumerate(jobs, start=1):
            assert job["input"]["rows"] == len(hs) - 1
            async with session.get(server.base + job["links"]["estimates"]) as response:
                assert response.status == 200
                got = configural(await response.json())
            want = reference[reference["variant"] == i]
            merged = want.merge(got, on=["group", "lhs", "op", "rhs"], suffixes=("_r", ""))
            assert len(merged) == len(want) > 0, f"upload {i}: parameters differ from lavaan's"
            assert merged["est"].to_numpy() == pytest.approx(merged["est_r"].to_numpy(), abs=1e-6)
            assert merged["se"].to_numpy() == pytest.approx(merged["se_r"].to_numpy(), abs=1e-6)
    # the runs really differ, so a job answered with another upload's estimates would fail
    first, second = (reference[reference["variant"] == v]["est"].to_numpy() for v in (1, 2))
    assert abs(first - second).max() > 1e-4


async def test_report_bundle_and_page_headers(server, hs_csv):
    async with aiohttp.ClientSession() as session:
        status, job = await submit(
            session, server.base, form(hs_csv.read_bytes(), group="school", model=ONE_FACTOR)
        )
        assert status == 202
        job = await wait_job(session, server.base, job["id"], timeout=120)
        assert job["status"] == "done", job["error"]
        assert job["summary"]["groups"] == ["Grant-White", "Pasteur"]

        async with session.get(server.base + job["links"]["report"]) as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            csp = response.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
            html = await response.text()
            assert "Grant-White" in html and "<script" not in html.lower()

        async with session.get(server.base + job["links"]["bundle"]) as response:
            assert response.status == 200
            names = zipfile.ZipFile(io.BytesIO(await response.read())).namelist()
        assert {"input.csv", "report/index.html", "report/estimates.json"} <= set(names)
        assert any(n.startswith("report/bundle/") for n in names)

        async with session.get(server.base + "/") as response:
            assert response.status == 200
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            assert "<form" in await response.text()
        async with session.get(server.base + "/api/openapi.json") as response:
            spec = await response.json()
        assert "/api/analyses/{job_id}/report" in spec["paths"]


# bad inputs ----------------------------------------------------------------------------------
def _malformed_csv() -> bytes:
    return b'school,x1,x2,x3\nPasteur,1,2,3\n"Grant-White,4,5,6\nPasteur,1,2\n'


BAD_UPLOADS = {
    "image": (
        dict(data=b"\x89PNG\r\n\x1a\n" + bytes(100), filename="data.png"),
        415,
        "unsupported file type",
    ),
    "xlsx named csv": (
        dict(data=b"PK\x03\x04" + bytes(100), filename="data.csv"),
        415,
        "zip archive",
    ),
    "oversized": (
        dict(data=b"school,x1\n" + b"Pasteur,1\n" * 120_000, filename="big.csv"),
        413,
        "upload too large: the limit is 1.0 MiB",
    ),
    "malformed csv": (dict(data=_malformed_csv()), 400, "not a well-formed CSV file"),
    "header only": (dict(data=b"school,x1,x2,x3\n"), 400, "no data rows"),
    "not in the allow-list": (
        dict(model="visual =~~ x1 + x2"),
        422,
        "model, line 1: more than one operator in one statement ('=~' and '~')",
    ),
    "refused by lavaan": (
        dict(model="visual =~ visual + x1 + x2"),
        422,
        "invalid lavaan model syntax: latent variable `visual' can not be measured by itself",
    ),
    "unknown group": (
        dict(group="classroom", model=ONE_FACTOR),
        422,
        "group column 'classroom' is not in the data",
    ),
    "unknown variable": (
        dict(model="visual =~ x1 + x2 + y7"),
        422,
        "the model uses variable(s) not in the data: y7",
    ),
    "text in a numeric column": (
        dict(model="visual =~ x1 + x2 + school2"),
        422,
        "column 'school2' must be numeric",
    ),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
async def test_bad_uploads_get_4xx_with_a_clear_message(server, hs_csv, case):
    fields, status, message = BAD_UPLOADS[case]
    hs = pd.read_csv(hs_csv)
    hs["school2"] = hs["school"]
    fields = {
        "data": hs.to_csv(index=False).encode(),
        "group": "school",
        "model": ONE_FACTOR,
        **fields,
    }
    async with aiohttp.ClientSession() as session:
        got_status, body = await submit(session, server.base, form(**fields))
    assert (got_status, body["status"]) == (status, status)
    assert message in body["error"]
    assert "Traceback" not in body["error"]


async def test_not_multipart_and_missing_data_field(server):
    async with aiohttp.ClientSession() as session:
        async with session.post(server.base + "/api/analyses", json={"data": "x"}) as response:
            assert response.status == 415
            assert "multipart/form-data" in (await response.json())["error"]
        fd = aiohttp.FormData()
        fd.add_field("model", ONE_FACTOR, content_type="text/plain")
        status, body = await submit(session, server.base, fd)
        assert status == 400 and "missing the 'data' file field" in body["error"]
        async with session.get(server.base + "/api/analyses/" + "0" * 32) as response:
            assert response.status == 404
        async with session.get(server.base + "/api/analyses/../../etc/passwd") as response:
            assert response.status == 404


# the R worker killed mid-job -----------------------------------------------------------------
async def test_killed_worker_fails_its_job_and_the_next_job_is_served(server, hs_csv):
    data = hs_csv.read_bytes()
    async with aiohttp.ClientSession() as session:
        _, victim = await submit(session, server.base, form(data, group="school", model=HS_MODEL))
        await wait_job(session, server.base, victim["id"], until=("running",), timeout=120)
        (worker,) = [w for w in server.health()["workers"] if w["job"] == victim["id"]]
        assert os.getpgid(worker["pid"]) == worker["pid"]  # its own group, forks included
        os.kill(worker["pid"], signal.SIGKILL)

        failed = await wait_job(session, server.base, victim["id"], timeout=60)
        assert failed["status"] == "failed"
        assert (
            "R worker process stopped unexpectedly (killed by signal SIGKILL)" in (failed["error"])
        )
        assert "the worker was restarted" in failed["error"]
        async with session.get(server.base + failed["links"]["self"] + "/report") as response:
            assert response.status == 409
            assert "failed" in (await response.json())["error"]

        _, after = await submit(session, server.base, form(data, group="school", model=ONE_FACTOR))
        after = await wait_job(session, server.base, after["id"], timeout=120)
        assert after["status"] == "done", after["error"]
    (restarted,) = [w for w in server.health()["workers"] if w["name"] == worker["name"]]
    assert restarted["restarts"] == worker["restarts"] + 1
    assert restarted["pid"] not in (None, worker["pid"])
    with pytest.raises(ProcessLookupError):  # R processes the killed worker forked are gone too
        os.killpg(worker["pid"], 0)


async def test_cancel_a_running_job(server, hs_csv):
    async with aiohttp.ClientSession() as session:
        _, job = await submit(
            session, server.base, form(hs_csv.read_bytes(), group="school", model=HS_MODEL)
        )
        await wait_job(session, server.base, job["id"], until=("running",), timeout=120)
        async with session.delete(server.base + job["links"]["self"]) as response:
            assert response.status == 200
            assert (await response.json())["status"] == "cancelled"
        job = await wait_job(session, server.base, job["id"])
        assert (job["status"], job["error"]) == ("cancelled", "cancelled by the client")


STUDY = """
name = "uploaded"
sessions_per_model = 100
instruments = ["iuipc10", "psa", "aods"]
[analysis]
estimator = "ML"
levels = ["configural"]
missing = "listwise"
{extra}
[[models]]
name = "sim-aligned"
provider = "simulated"
[[models]]
name = "sim-reversed"
provider = "simulated"
"""


async def test_a_study_config_upload_gets_vaar_with_the_planted_signs(server):
    from vaar.alignment.simulate import simulate_wide
    from vaar.instruments import load_instrument

    instruments = [load_instrument(i) for i in ("iuipc10", "psa", "aods")]
    planted = {"sim-aligned": (-0.6, 0.6), "sim-reversed": (0.6, -0.6)}
    data = simulate_wide(planted, instruments, sessions=100, seed=4).to_csv(index=False).encode()
    async with aiohttp.ClientSession() as session:
        status, job = await submit(session, server.base, form(data, study=STUDY.format(extra="")))
        assert status == 202, job
        job = await wait_job(session, server.base, job["id"], timeout=180)
        assert job["status"] == "done", job["error"]
        async with session.get(server.base + job["links"]["estimates"]) as response:
            doc = await response.json()
        soft = {r["model"]: r["vaar_soft"] for r in doc["alignment"]["scores"]}
        assert soft["sim-aligned"] > 0.95 and soft["sim-reversed"] < 0.05
        assert doc["study"]["name"] == "uploaded"

        remote = STUDY.format(extra='scheduler = "tcp://10.0.0.1:8786"')
        status, body = await submit(session, server.base, form(data, study=remote))
        assert status == 422 and "does not connect to addresses a client names" in body["error"]


async def test_a_job_past_its_time_limit_is_failed_and_its_worker_restarted(tmp_path, hs_csv):
    with Server(tmp_path / "data", "--job-timeout", "0.5") as srv:
        before = srv.health()["workers"][0]
        async with aiohttp.ClientSession() as session:
            upload = form(hs_csv.read_bytes(), group="school", model=HS_MODEL)
            _, job = await submit(session, srv.base, upload)
            job = await wait_job(session, srv.base, job["id"], timeout=120)
        assert job["status"] == "failed"
        assert "the job exceeded the time limit of 0.5 s" in job["error"]
        for _ in range(240):  # the worker comes back (R takes a few seconds to load)
            after = srv.health()["workers"][0]
            if after["state"] == "idle":
                break
            await asyncio.sleep(0.5)
        assert after["state"] == "idle" and after["restarts"] == before["restarts"] + 1
        assert after["pid"] != before["pid"]


# restart -------------------------------------------------------------------------------------
async def test_restart_keeps_finished_jobs_and_fails_interrupted_ones(tmp_path, hs_csv):
    data_dir = tmp_path / "data"
    data = hs_csv.read_bytes()
    async with aiohttp.ClientSession() as session:
        with Server(data_dir) as first:
            _, done = await submit(
                session, first.base, form(data, group="school", model=ONE_FACTOR)
            )
            done = await wait_job(session, first.base, done["id"], timeout=120)
            assert done["status"] == "done", done["error"]
            async with session.get(first.base + done["links"]["estimates"]) as response:
                estimates = await response.read()
            _, cut = await submit(session, first.base, form(data, group="school", model=HS_MODEL))
            await wait_job(session, first.base, cut["id"], until=("running",), timeout=60)
            first.stop(signal.SIGKILL)  # no chance to tidy up: a crash or a power cut

        second = Server(data_dir).start(wait_for_workers=False)  # stored results need no R
        try:
            async with session.get(second.base + done["links"]["self"]) as response:
                again = await response.json()
            assert (again["status"], again["summary"]) == ("done", done["summary"])
            async with session.get(second.base + done["links"]["estimates"]) as response:
                assert await response.read() == estimates
            async with session.get(second.base + cut["links"]["self"]) as response:
                interrupted = await response.json()
            assert interrupted["status"] == "failed"
            assert "the server stopped while this job was running" in interrupted["error"]
        finally:
            second.stop()


# token and rate limits -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with a bearer token from the environment and two uploads per minute."""
    srv = Server(
        tmp_path_factory.mktemp("guarded") / "data",
        *("--uploads-per-minute", "2"),
        env={"VAAR_TOKEN": TOKEN},
    )
    srv.start(wait_for_workers=False)  # these checks all happen before a job reaches R
    yield srv
    srv.stop()


async def test_bearer_token(guarded, hs_csv):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(guarded.base + "/api/analyses") as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "bearer token" in (await response.json())["error"]
        wrong = {"Authorization": "Bearer " + "x" * len(TOKEN)}
        async with session.get(guarded.base + "/api/analyses", headers=wrong) as response:
            assert response.status == 401
        async with session.get(guarded.base + "/api/analyses", headers=auth) as response:
            assert response.status == 200
        async with session.get(guarded.base + "/api/health") as response:
            assert response.status == 200  # the health probe needs no token

        upload = form(hs_csv.read_bytes(), group="classroom", model=ONE_FACTOR)
        status, body = await submit(session, guarded.base, upload)
        assert status == 401
        # with the token the upload gets past authentication, to the content checks
        upload = form(hs_csv.read_bytes(), group="classroom", model=ONE_FACTOR)
        status, body = await submit(session, guarded.base, upload, headers=auth)
        assert status == 422 and "group column 'classroom'" in body["error"]


async def test_upload_rate_limit_per_client(guarded):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(4):
            fd = form(b"not,a,useful\nfile,at,all\n", group="nope")
            async with session.post(
                guarded.base + "/api/analyses", data=fd, headers=auth
            ) as response:
                statuses.append(response.status)
                body = await response.json()
    assert statuses[-1] == 429, statuses
    assert "at most 2 uploads per minute" in body["error"]


def test_serve_reports_a_busy_port_and_a_bad_token_without_a_traceback(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for args, message in [
            (["--port", str(port)], f"cannot serve on 127.0.0.1:{port}: Address already in use"),
            (["--token", "short"], "the bearer token must be at least 16 characters"),
        ]:
            cmd = [VAAR, "serve", "--data-dir", str(tmp_path / "data"), *args]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            assert done.returncode != 0
            assert message in done.stderr
            assert "Traceback" not in done.stderr + done.stdout
