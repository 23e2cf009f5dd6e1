"""Loopback fakes of the OpenAI Batch API and the Anthropic Message Batches API, on top of the
fake LLM (same answers, same prompt cache), with the faults that matter: requests that error,
batches that expire or are cancelled with only part of their requests done, slow batches.

OpenAI: `POST /v1/files` (multipart, purpose batch) -> `POST /v1/batches` -> `GET
/v1/batches/{id}` (validating, in_progress, finalizing, then completed / expired / cancelled)
-> `GET /v1/files/{id}/content` (output and error files, JSONL by custom_id).
Anthropic: `POST /v1/messages/batches` -> `GET /v1/messages/batches/{id}` (in_progress, then
ended) -> `GET /v1/messages/batches/{id}/results` (JSONL: succeeded / errored / expired /
canceled).

A batch ends after `BatchFaults.polls` polls; its requests are answered then, in order. Every
batch received is kept in `batches` (kind, id, custom_ids), so tests can check that nothing is
submitted twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.fake_llm import FakeLLM


@dataclass
class BatchFaults:
    polls: int = 2  # polls before a batch ends
    error_rate: float = 0.0  # share of requests that error (drawn per request)
    expire: set = field(default_factory=set)  # ordinals (1 = first batch) that expire half done
    cancel: set = field(default_factory=set)  # ordinals that are cancelled half done
    fail_create: int = 0  # the first n batch creations answer 500 (the retry layer's business)


@dataclass
class FakeBatchLLM(FakeLLM):
    batch_faults: BatchFaults = field(default_factory=BatchFaults)
    batches: list = field(default_factory=list)  # {"kind", "id", "custom_ids", "state", ...}
    files: dict = field(default_factory=dict)

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/v1/files", self.upload)
        app.router.add_get("/v1/files/{id}/content", self.file_content)
        app.router.add_post("/v1/batches", self.openai_create)
        app.router.add_get("/v1/batches/{id}", self.openai_get)
        app.router.add_post("/v1/messages/batches", self.anthropic_create)
        app.router.add_get("/v1/messages/batches/{id}", self.anthropic_get)
        app.router.add_get("/v1/messages/batches/{id}/results", self.anthropic_results)
        return app

    # -- shared ----------------------------------------------------------------------------
    def _new(self, kind: str, requests: list[tuple[str, dict]]) -> dict | web.Response:
        f = self.batch_faults
        self.counts["batch_creates"] += 1
        if self.counts["batch_creates"] <= f.fail_create:
            return web.json_response({"error": {"message": "try again"}}, status=500)
        ids = [cid for cid, _ in requests]
        if len(set(ids)) != len(ids):
            return web.json_response({"error": {"message": "duplicate custom_id"}}, status=400)
        ordinal = len(self.batches) + 1
        prefix = "batch" if kind == "openai" else "msgbatch"
        batch = {
            "kind": kind,
            "id": f"{prefix}_{ordinal}",
            "ordinal": ordinal,
            "custom_ids": ids,
            "requests": requests,
            "polls": 0,
            "ended": False,
            "results": {},  # custom_id -> ("succeeded", body) | ("errored", msg) | (lost, None)
        }
        self.batches.append(batch)
        return batch

    def _find(self, request) -> dict:
        for batch in self.batches:
            if batch["id"] == request.match_info["id"]:
                return batch
        raise web.HTTPNotFound(text=json.dumps({"error": {"message": "no such batch"}}))

    async def _advance(self, batch: dict) -> None:
        """One poll: the batch ends after `polls` of them; then its requests are answered."""
        if batch["ended"]:
            return
        batch["polls"] += 1
        if batch["polls"] < self.batch_faults.polls:
            return
        f, n = self.batch_faults, len(batch["requests"])
        lost = "expired" if batch["ordinal"] in f.expire else None
        lost = "canceled" if batch["ordinal"] in f.cancel else lost
        for i, (cid, body) in enumerate(batch["requests"]):
            if lost and i >= n // 2:
                batch["results"][cid] = (lost, None)
            elif self.rng.random() < f.error_rate:
                batch["results"][cid] = ("errored", "overloaded")
                self.counts["batch_errored"] += 1
            else:
                reply = (
                    await self.openai_reply(body)
                    if batch["kind"] == "openai"
                    else await self.anthropic_reply(body)
                )
                batch["results"][cid] = ("succeeded", reply)
        batch["ended"] = True
        batch["lost"] = lost

    def _count(self, batch: dict, kind: str) -> int:
        return sum(1 for r, _ in batch["results"].values() if r == kind)

    # -- OpenAI ----------------------------------------------------------------------------
    async def upload(self, request):
        form = await request.post()
        if form.get("purpose") != "batch" or "file" not in form:
            return web.json_response({"error": {"message": "purpose/file missing"}}, status=400)
        content = form["file"].file.read()
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = content
        return web.json_response({"id": file_id, "object": "file", "bytes": len(content)})

    async def file_content(self, request):
        content = self.files.get(request.match_info["id"])
        if content is None:
            raise web.HTTPNotFound()
        return web.Response(body=content, content_type="application/jsonl")

    async def openai_create(self, request):
        body = await request.json()
        content = self.files.get(body.get("input_file_id"))
        if content is None or body.get("endpoint") != "/v1/chat/completions":
            return web.json_response({"error": {"message": "bad input_file_id"}}, status=400)
        lines = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
        batch = self._new("openai", [(x["custom_id"], x["body"]) for x in lines])
        if isinstance(batch, web.Response):
            return batch
        return web.json_response(self._openai_object(batch))

    async def openai_get(self, request):
        batch = self._find(request)
        await self._advance(batch)
        return web.json_response(self._openai_object(batch))

    def _openai_object(self, batch: dict) -> dict:
        obj = {
            "id": batch["id"],
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "status": "validating" if batch["polls"] == 0 else "in_progress",
            "request_counts": {"total": len(batch["requests"]), "completed": 0, "failed": 0},
            "output_file_id": None,
            "error_file_id": None,
        }
        if not batch["ended"]:
            return obj
        obj["status"] = {"expired": "expired", "canceled": "cancelled"}.get(
            batch["lost"], "completed"
        )
        out, err = [], []
        for cid, (kind, value) in batch["results"].items():
            if kind == "succeeded":
                out.append({"id": f"r-{cid}", "custom_id": cid, "error": None,
                            "response": {"status_code": 200, "body": value}})  # fmt: skip
            elif kind == "errored":
                err.append({"id": f"r-{cid}", "custom_id": cid, "error": None,
                            "response": {"status_code": 500,
                                         "body": {"error": {"message": value}}}})  # fmt: skip
        for rows, key in ((out, "output_file_id"), (err, "error_file_id")):
            if rows:
                file_id = f"file-{batch['id']}-{key}"
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                obj[key] = file_id
        obj["request_counts"].update(completed=len(out), failed=len(err))
        return obj

    # -- Anthropic -------------------------------------------------------------------------
    async def anthropic_create(self, request):
        body = await request.json()
        requests = [(r["custom_id"], r["params"]) for r in body.get("requests", [])]
        if not requests or any("max_tokens" not in p for _, p in requests):
            return web.json_response({"error": {"message": "bad requests"}}, status=400)
        batch = self._new("anthropic", requests)
        if isinstance(batch, web.Response):
            return batch
        return web.json_response(self._anthropic_object(batch))

    async def anthropic_get(self, request):
        batch = self._find(request)
        await self._advance(batch)
        return web.json_response(self._anthropic_object(batch))

    def _anthropic_object(self, batch: dict) -> dict:
        n = len(batch["requests"])
        counts = {k: self._count(batch, k) for k in ("succeeded", "errored", "canceled", "expired")}
        return {
            "id": batch["id"],
            "type": "message_batch",
            "processing_status": "ended" if batch["ended"] else "in_progress",
            "request_counts": {"processing": n - sum(counts.values()), **counts},
            "results_url": f"{self.base_url}/messages/batches/{batch['id']}/results"
            if batch["ended"]
            else None,
        }

    async def anthropic_results(self, request):
        batch = self._find(request)
        if not batch["ended"]:
            return web.json_response({"error": {"message": "not ended"}}, status=400)
        lines = []
        for cid, (kind, value) in batch["results"].items():
            result = {"type": kind}
            if kind == "succeeded":
                result["message"] = value
            elif kind == "errored":
                result["error"] = {"type": "overloaded_error", "message": value}
            lines.append(json.dumps({"custom_id": cid, "result": result}) + "\n")
        return web.Response(body="".join(lines).encode(), content_type="application/jsonl")
