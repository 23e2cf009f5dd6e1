"""Uploads that cost the server more than their size: checked in time linear in the input and
refused over real HTTP on loopback with the limit named (a real `vaar serve`, no mocks).

Every case here is refused before R, so the server is not waited on for its R worker.
"""

from __future__ import annotations

import time

import aiohttp
import pytest

from vaar.service.testing import Server, form, submit

MAX_COLUMNS = 500
MAX_ROWS = 1000
FAST = 1.0  # seconds: well under this, on a loaded two-core machine


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(
        tmp_path_factory.mktemp("limits") / "data",
        *("--workers", "1", "--max-upload-mb", "2"),
        *("--max-columns", str(MAX_COLUMNS), "--max-rows", str(MAX_ROWS)),
        *("--uploads-per-minute", "1000", "--requests-per-minute", "100000"),
    )
    srv.start(wait_for_workers=False)
    try:
        yield srv
    finally:
        srv.stop()


def wide_csv(columns: int, rows: int = 2, repeat: str | None = None) -> bytes:
    names = ["model"] + [f"c{i:05d}" for i in range(columns - 1)]
    if repeat:
        names[-1] = repeat
    lines = [",".join(names)]
    lines += [",".join([f"m{r % 2}"] + ["1"] * (columns - 1)) for r in range(rows)]
    return ("\n".join(lines) + "\n").encode()


async def timed_submit(server, fd) -> tuple[int, dict, float]:
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        status, body = await submit(session, server.base, fd)
        return status, body, time.perf_counter() - start


async def test_fifty_thousand_columns_are_refused_at_once_with_the_limit_named(server):
    status, body, seconds = await timed_submit(server, form(wide_csv(50_000)))
    assert status == 413, body
    assert f"50000 columns; the service takes at most {MAX_COLUMNS} (max_columns)" in body["error"]
    assert seconds < FAST, seconds


async def test_too_many_rows_are_refused_with_the_limit_named(server):
    status, body, seconds = await timed_submit(server, form(wide_csv(3, rows=MAX_ROWS + 1)))
    assert status == 413, body
    assert f"{MAX_ROWS + 1} rows; the service takes at most {MAX_ROWS} (max_rows)" in body["error"]
    assert seconds < FAST, seconds


async def test_a_repeated_header_among_many_columns_is_found_in_linear_time(server):
    data = wide_csv(MAX_COLUMNS, repeat="c00003")
    status, body, seconds = await timed_submit(server, form(data))
    assert status == 400 and "repeated column name(s) ['c00003']" in body["error"], body
    assert seconds < FAST, seconds


async def test_a_study_with_a_key_of_a_hundred_thousand_parts_is_refused_before_tomllib(server):
    """tomllib needs memory in the square of a dotted key's parts (10,000: 0.4 GB); the 256 KiB
    study field fits 100,000 of them."""
    study = "a" + ".a" * 100_000 + " = 1\n"
    status, body, seconds = await timed_submit(server, form(wide_csv(3), study=study))
    assert status == 422 and "study: line 1: more than 100 dots" in body["error"], body
    assert seconds < FAST, seconds


@pytest.mark.parametrize(
    ("cell", "message"),
    [("inf", "line 3 holds inf"), ("-Infinity", "line 3 holds -inf"), ("1e400", "line 3")],
)
async def test_infinite_answers_are_refused(server, cell, message):
    items = [f"psa{i:02d}" for i in range(1, 17)] + [f"aods{i:02d}" for i in range(1, 13)]
    rows = [",".join(["model", *items])]
    rows += [",".join([f"m{r % 2}", *["3"] * len(items)]) for r in range(4)]
    rows[2] = rows[2].replace(",3", f",{cell}", 1)
    status, body, _ = await timed_submit(server, form(("\n".join(rows) + "\n").encode()))
    assert status == 422, body
    assert "column 'psa01' must be numeric" in body["error"] and message in body["error"]


async def test_a_model_upload_with_one_group_is_refused(server):
    """Its ladder would report "strict" invariance, having compared nothing."""
    data = b"school,x1,x2,x3\n" + b"Pasteur,1,2,3\nPasteur,2,3,1\nPasteur,3,1,2\n"
    status, body, _ = await timed_submit(
        server, form(data, group="school", model="visual =~ x1 + x2 + x3")
    )
    assert status == 422 and "group column 'school' holds 1 group(s) (Pasteur)" in body["error"]
