"""The OpenAI Batch API: the wave's requests as a JSONL file (`POST /files`, purpose `batch`),
one batch over it (`POST /batches`, endpoint /v1/chat/completions, completion window 24h),
polled (`GET /batches/{id}`) until it is completed, failed, expired or cancelled; then its output
and error files (`GET /files/{id}/content`), one JSON line per request by `custom_id`.

An expired or cancelled batch still has an output file with the requests it finished; the ones
missing from both files come back as lost, and vaar sends them again in the next wave.
"""

from __future__ import annotations

import json

import aiohttp

from vaar.collection.batch import BatchAPI, BatchStatus, Outcome

ENDPOINT = "/v1/chat/completions"
ENDED = {"completed", "failed", "expired", "cancelled"}


class OpenAIBatchAPI(BatchAPI):
    async def submit(self, requests: dict[str, dict]) -> str:
        p = self.provider
        lines = [
            json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body})
            for cid, body in requests.items()
        ]
        jsonl = ("\n".join(lines) + "\n").encode()

        def form():
            data = aiohttp.FormData()
            data.add_field("purpose", "batch")
            data.add_field("file", jsonl, filename="wave.jsonl", content_type="application/jsonl")
            return data

        upload = await p.call("POST", f"{p.base_url}/files", form=form)
        batch = await p.call(
            "POST",
            f"{p.base_url}/batches",
            {"input_file_id": upload["id"], "endpoint": ENDPOINT, "completion_window": "24h"},
        )
        return batch["id"]

    async def status(self, batch_id: str) -> BatchStatus:
        p = self.provider
        data = await p.call("GET", f"{p.base_url}/batches/{batch_id}")
        counts = data.get("request_counts") or {}
        return BatchStatus(
            state=data.get("status", "?"),
            ended=data.get("status") in ENDED,
            done=int(counts.get("completed") or 0) + int(counts.get("failed") or 0),
            total=int(counts.get("total") or 0),
            detail=data,
        )

    async def results(self, status: BatchStatus) -> dict[str, Outcome]:
        p, out = self.provider, {}
        for key in ("output_file_id", "error_file_id"):
            file_id = status.detail.get(key)
            if not file_id:
                continue
            raw = await p.call("GET", f"{p.base_url}/files/{file_id}/content", raw=True)
            for line in raw.decode("utf-8", "replace").splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                response = row.get("response") or {}
                if response.get("status_code") == 200 and not row.get("error"):
                    out[row["custom_id"]] = Outcome(data=response.get("body"))
                else:
                    error = row.get("error") or (response.get("body") or {}).get("error")
                    out[row["custom_id"]] = Outcome(
                        error=f"HTTP {response.get('status_code')}: {str(error)[:200]}"
                    )
        return out
