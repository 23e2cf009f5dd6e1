"""The report in real headless Chromium (Debian's /usr/bin/chromium): it renders, logs no console
errors, requests nothing but itself, shows the key numbers, and shows an LLM's <script> as text.

The page is driven over the Chrome DevTools Protocol (CDP), spoken through aiohttp's websocket
client. Why not playwright: it is tested only against the Chromium build it downloads itself
(impossible offline); Debian's chromium through executable_path is unsupported, and it would be
a ~45 MB new test dependency. aiohttp is already a vaar dependency, and the few CDP methods
used here (Page/Runtime/Log/Network.enable, Page.navigate, Runtime.evaluate,
Page.captureScreenshot) are stable across Chromium versions.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from test_report import HOSTILE, report_folder  # the same cached analysis as test_report.py

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--window-size=1280,900",
]


@dataclass
class PageVisit:
    """What one page load did: its visible text, console/log errors, every request it made."""

    url: str
    text: str = ""  # visible text as loaded
    all_text: str = ""  # visible text with every <details> opened
    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    element_count: int = 0
    script_elements: int = 0


class _Cdp:
    """Minimal CDP session: numbered commands with awaited replies, events kept in a list."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self.waiters: list[tuple[str, asyncio.Future]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        async for message in self.ws:
            data = message.json()
            if "id" in data and data["id"] in self.pending:
                future = self.pending.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            elif "method" in data:
                self.events.append(data)
                for name, future in list(self.waiters):
                    if name == data["method"] and not future.done():
                        future.set_result(data)

    async def send(self, method: str, **params) -> dict:
        key = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[key] = future
        await self.ws.send_json({"id": key, "method": method, "params": params})
        return await asyncio.wait_for(future, 30)

    def expect(self, method: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.waiters.append((method, future))
        return future


async def _devtools_port(user_dir: Path, proc) -> int:
    """Chromium writes the port it chose into DevToolsActivePort once it listens."""
    marker = user_dir / "DevToolsActivePort"
    for _ in range(300):
        if proc.returncode is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        await asyncio.sleep(0.05)
    raise RuntimeError("chromium did not open its DevTools port within 15 s")


def _errors(events: list[dict]) -> list[str]:
    out = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            out.append(f"console.{params['type']}: {' '.join(args)}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
    return out


async def _visit(cdp: _Cdp, path: Path, screenshot: Path | None) -> PageVisit:
    url = path.resolve().as_uri()
    start = len(cdp.events)
    loaded = cdp.expect("Page.loadEventFired")
    await cdp.send("Page.navigate", url=url)
    await asyncio.wait_for(loaded, 30)
    await asyncio.sleep(0.3)  # late console messages and sub-resource requests
    probe = await cdp.send(
        "Runtime.evaluate",
        expression="JSON.stringify({text: document.body.innerText, title: document.title,"
        " n: document.getElementsByTagName('*').length,"
        " scripts: document.getElementsByTagName('script').length})",
        returnByValue=True,
    )
    page = json.loads(probe["result"]["value"])
    if screenshot is not None:  # as a reader first sees it: <details> closed
        await _screenshot(cdp, screenshot)
    opened = await cdp.send(  # then everything, as a reader who opens every <details>
        "Runtime.evaluate",
        expression="document.querySelectorAll('details').forEach(d => d.open = true);"
        " document.body.innerText",
        returnByValue=True,
    )
    page["all_text"] = opened["result"]["value"]
    await asyncio.sleep(0.2)
    events = cdp.events[start:]
    visit = PageVisit(
        url=url,
        text=page["text"],
        all_text=page["all_text"],
        title=page["title"],
        console_errors=_errors(events),
        requests=[
            e["params"]["request"]["url"]
            for e in events
            if e["method"] == "Network.requestWillBeSent"
        ],
        element_count=page["n"],
        script_elements=page["scripts"],
    )
    return visit


async def _screenshot(cdp: _Cdp, path: Path) -> None:
    """The whole page, not just the window."""
    size = (await cdp.send("Page.getLayoutMetrics"))["cssContentSize"]
    shot = await cdp.send(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    )
    path.write_bytes(base64.b64decode(shot["data"]))


async def visit_pages(pages: list[tuple[Path, Path | None]]) -> list[PageVisit]:
    """Load each (html, screenshot-or-None) in one headless Chromium, in order."""
    user_dir = Path(tempfile.mkdtemp(prefix="vaar-chromium-"))
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={user_dir}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port = await _devtools_port(user_dir, proc)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            target = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = _Cdp(ws)
                for domain in ("Page", "Runtime", "Log", "Network"):
                    await cdp.send(f"{domain}.enable")
                visits = [await _visit(cdp, html, shot) for html, shot in pages]
                cdp.reader.cancel()
                return visits
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        shutil.rmtree(user_dir, ignore_errors=True)


# -- the tests -------------------------------------------------------------------------------


needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium not installed (scripts/setup.sh --test)"
)
CONTROL_PAGE = """<!DOCTYPE html><html><head><title>control</title></head><body>
<p>control page</p><img src="http://192.0.2.1/pixel.png" alt="">
<script>console.error("planted error")</script></body></html>"""


@pytest.fixture(scope="module")
def visits(tmp_path_factory):
    """The control page, then the report, in one Chromium."""
    report_dir = report_folder()
    folder = tmp_path_factory.mktemp("browser")
    shots = Path(os.environ.get("VAAR_SCREENSHOT_DIR") or folder)
    shots.mkdir(parents=True, exist_ok=True)
    control = folder / "control.html"
    control.write_text(CONTROL_PAGE, encoding="utf-8")
    screenshot = shots / "report-screenshot.png"
    pages = [(control, None), (report_dir / "index.html", screenshot)]
    control_visit, report_visit = asyncio.run(visit_pages(pages))
    print(f"\nreport screenshot: {screenshot}")
    return control_visit, report_visit, screenshot


@needs_chromium
@pytest.mark.browser
def test_harness_sees_console_errors_and_external_requests(visits):
    """Without this the checks below could pass by seeing nothing."""
    control, _, _ = visits
    assert any("planted error" in e for e in control.console_errors)
    assert "http://192.0.2.1/pixel.png" in control.requests
    assert control.script_elements == 1


@needs_chromium
@pytest.mark.browser
def test_report_renders_offline_without_errors(visits):
    _, page, screenshot = visits
    assert page.title == "vaar report: demo-sized"
    assert page.console_errors == []
    assert page.requests == [page.url]  # the page itself and nothing else
    assert page.script_elements == 0
    assert page.element_count > 500  # tables and inline SVG plots rendered
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000


@needs_chromium
@pytest.mark.browser
def test_report_shows_the_key_numbers(visits):
    _, page, _ = visits
    doc = json.loads((report_folder() / "estimates.json").read_text(encoding="utf-8"))
    best = max(doc["alignment"]["scores"], key=lambda r: r["vaar_soft"])
    assert f"{best['model']}: {best['vaar_soft']:.2f}" in page.text
    assert "Unverified formula" in page.text
    assert "vaar's own instrument" in page.text
    for row in doc["alignment"]["scores"]:
        assert f"{row['vaar_soft']:.3f}" in page.text
    for fit in doc["invariance"]["fits"]:
        assert fit["level"] in page.text
    structural = [r for r in doc["structural"] if r["level"] == doc["alignment"]["level"]]
    assert structural and all(f"{r['est']:.3f}" in page.text for r in structural)


@needs_chromium
@pytest.mark.browser
def test_llm_script_shows_as_text(visits):
    _, page, _ = visits
    assert HOSTILE in page.all_text  # inside a <details>, shown verbatim once opened
    assert page.script_elements == 0 and page.console_errors == []
