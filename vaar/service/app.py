"""The aiohttp application: the routes and their handlers, the job store and R workers that
start and stop with it. The middlewares that make it safe to expose are in `middleware`."""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import time
import zipfile
from pathlib import Path

from aiohttp import web

from vaar import __version__
from vaar.errors import VaarError
from vaar.files import package_path
from vaar.service import uploads
from vaar.service.jobs import INPUT_FILE, REPORT_DIR
from vaar.service.middleware import (
    LIMITS,
    MIDDLEWARES,
    PAGE_CSP,
    REPORT_CSP,
    SETTINGS,
    TOKEN_COOKIE,
    ApiError,
    RateLimits,
)
from vaar.service.openapi import openapi_spec
from vaar.service.runner import JOB_FUNCTION, WARMUP, JobRunner
from vaar.service.settings import ServiceSettings
from vaar.service.store import DONE, JobStore, new_job_id
from vaar.service.worker import JobFailed, WorkerLost

log = logging.getLogger("vaar.service")
STATIC = package_path("service", "static")
JOB_ID = r"{job_id:[0-9a-f]{32}}"

STORE = web.AppKey("store", JobStore)
RUNNER = web.AppKey("runner", JobRunner)


# handlers ------------------------------------------------------------------------------------
def _job_url(request: web.Request, job_id: str) -> str:
    return f"/api/analyses/{job_id}"


def job_view(request: web.Request, job) -> dict:
    base = _job_url(request, job.id)
    view = {
        "id": job.id,
        "status": job.status,
        "stage": job.stage,
        "progress": round(job.progress, 3),
        "error": job.error,
        "created": _iso(job.created),
        "started": _iso(job.started),
        "finished": _iso(job.finished),
        "input": {k: job.spec.get(k) for k in ("kind", "filename", "group", "rows", "groups")},
        "summary": job.summary,
        "links": {"self": base},
    }
    if job.status == DONE:
        view["links"].update(
            report=f"{base}/report", estimates=f"{base}/estimates", bundle=f"{base}/bundle"
        )
    return view


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def create_analysis(request: web.Request) -> web.Response:
    settings, store, runner = request.app[SETTINGS], request.app[STORE], request.app[RUNNER]
    upload = await uploads.read_upload(request, settings.max_upload_bytes)
    checked = await asyncio.to_thread(
        uploads.check_upload,
        upload,
        max_columns=settings.max_columns,
        max_rows=settings.max_rows,
    )
    if checked.model:
        try:
            observed = await runner.check({"syntax": checked.model})
        except JobFailed as exc:
            raise uploads.unprocessable(str(exc)) from None
        except WorkerLost as exc:
            raise ApiError(503, f"cannot check the model now: {exc}; retry later") from None
        uploads.check_model_variables(checked.table, checked.group, observed)
    if runner.queue.qsize() >= settings.queue_limit:
        raise ApiError(503, "the job queue is full; retry later", {"Retry-After": "30"})
    job_id = new_job_id()
    job_dir = runner.job_dir(job_id)
    await asyncio.to_thread(_write_input, job_dir, checked)
    job = store.add(job_id, client=request.remote or "", spec=checked.spec())
    runner.submit(job_id)
    return web.json_response(
        job_view(request, job), status=202, headers={"Location": _job_url(request, job_id)}
    )


def _write_input(job_dir: Path, checked: uploads.CheckedUpload) -> None:
    job_dir.mkdir(parents=True)
    checked.table.to_csv(job_dir / INPUT_FILE, index=False)
    if checked.model:
        (job_dir / "model.lav").write_text(checked.model, encoding="utf-8")
    if checked.study_text:
        (job_dir / "study.toml").write_text(checked.study_text, encoding="utf-8")


def _job(request: web.Request):
    job = request.app[STORE].get(request.match_info["job_id"])
    if job is None:
        raise ApiError(404, f"no analysis with id {request.match_info['job_id']}")
    return job


def _finished_file(request: web.Request, name: str) -> Path:
    job = _job(request)
    if job.status != DONE:
        detail = f": {job.error}" if job.error else ""
        raise ApiError(409, f"analysis {job.id} is {job.status}{detail}; no {name} yet")
    return request.app[RUNNER].job_dir(job.id)


async def get_analysis(request: web.Request) -> web.Response:
    return web.json_response(job_view(request, _job(request)))


async def list_analyses(request: web.Request) -> web.Response:
    jobs = request.app[STORE].list(limit=100)
    return web.json_response({"analyses": [job_view(request, j) for j in jobs]})


async def delete_analysis(request: web.Request) -> web.Response:
    """Cancel a queued or running job; delete a finished one and its files."""
    job = _job(request)
    runner = request.app[RUNNER]
    if not job.is_finished and runner.cancel(job.id):
        return web.json_response(job_view(request, request.app[STORE].get(job.id)))
    runner.remove(job.id)
    return web.Response(status=204)


async def get_report(request: web.Request) -> web.Response:
    path = _finished_file(request, "report") / REPORT_DIR / "index.html"
    html = await asyncio.to_thread(path.read_bytes)
    return web.Response(
        body=html,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": REPORT_CSP},
    )


async def get_estimates(request: web.Request) -> web.Response:
    path = _finished_file(request, "estimates") / REPORT_DIR / "estimates.json"
    body = await asyncio.to_thread(path.read_bytes)
    return web.Response(body=body, content_type="application/json")


async def get_bundle(request: web.Request) -> web.Response:
    job_dir = _finished_file(request, "bundle")
    archive = await asyncio.to_thread(bundle_zip, job_dir)
    return web.FileResponse(
        archive,
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="vaar-{job_dir.name}.zip"',
        },
    )


def bundle_zip(job_dir: Path) -> Path:
    """The report directory (HTML, estimates.json, CSV tables, reproduction bundle) plus the
    uploaded input, zipped once and kept."""
    archive = job_dir / "bundle.zip"
    if archive.exists():
        return archive
    partial = job_dir / "bundle.zip.partial"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(job_dir.rglob("*")):
            if path.is_file() and not path.name.startswith("bundle.zip"):
                zf.write(path, path.relative_to(job_dir).as_posix())
    partial.replace(archive)
    return archive


async def health(request: web.Request) -> web.Response:
    body = request.app[RUNNER].health()
    body["version"] = __version__
    return web.json_response(body)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_spec(__version__))


async def login(request: web.Request) -> web.Response:
    """The upload page's way to a token: an HttpOnly, SameSite=Strict cookie, so report links
    open in the browser without putting the token in a URL."""
    token = request.app[SETTINGS].token
    form = await request.post()
    presented = str(form.get("token", ""))
    if token and not hmac.compare_digest(presented.encode(), token.encode()):
        raise ApiError(401, "wrong token")
    response = web.json_response({"ok": True, "auth": bool(token)})
    if token:
        response.set_cookie(TOKEN_COOKIE, presented, httponly=True, samesite="Strict", path="/api/")
    return response


async def page(request: web.Request) -> web.Response:
    return web.FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP})


# application ---------------------------------------------------------------------------------
def create_app(
    settings: ServiceSettings, *, job_function: str = JOB_FUNCTION, warmup: str | None = WARMUP
) -> web.Application:
    """The app with its job store and R workers; they start and stop with the app."""
    app = web.Application(
        middlewares=MIDDLEWARES,
        client_max_size=settings.max_upload_bytes + 1024 * 1024,
    )
    app[SETTINGS] = settings
    app[LIMITS] = RateLimits(settings)

    async def lifecycle(app: web.Application):
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        app[STORE] = JobStore(settings.db_path)
        app[RUNNER] = JobRunner(settings, app[STORE], job_function=job_function, warmup=warmup)
        await app[RUNNER].start()
        yield
        await app[RUNNER].stop()
        app[STORE].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_post("/api/session", login)
    app.router.add_post("/api/analyses", create_analysis)
    app.router.add_get("/api/analyses", list_analyses)
    app.router.add_get(f"/api/analyses/{JOB_ID}", get_analysis)
    app.router.add_delete(f"/api/analyses/{JOB_ID}", delete_analysis)
    app.router.add_get(f"/api/analyses/{JOB_ID}/report", get_report)
    app.router.add_get(f"/api/analyses/{JOB_ID}/estimates", get_estimates)
    app.router.add_get(f"/api/analyses/{JOB_ID}/bundle", get_bundle)
    return app


def run(settings: ServiceSettings) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
        log.warning(
            "serving on %s without a bearer token: anyone who can reach it can submit jobs",
            settings.host,
        )
    check_address(settings.host, settings.port)  # before R starts: fail fast and clearly
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log_format='%a "%r" %s %b %Tfs',
        print=lambda line: log.info(line.strip()),
    )


def check_address(host: str, port: int) -> None:
    """VaarError when the address cannot be bound (in use, not ours), instead of a traceback."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise VaarError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise VaarError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
