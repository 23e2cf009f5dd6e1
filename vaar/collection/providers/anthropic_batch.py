"""The Anthropic Message Batches API: one `POST /v1/messages/batches` with the wave's requests
(`custom_id` + the Messages API `params`), polled (`GET /v1/messages/batches/{id}`) until its
`processing_status` is `ended`, then its results, one JSON line per request whose `result.type`
is succeeded, errored, canceled or expired.

The results are read from `/v1/messages/batches/{id}/results` on the configured base URL, not
from the reply's `results_url`, so the API key never goes to an address a reply names.
"""

from __future__ import annotations

import json

from vaar.collection.batch import BatchAPI, BatchStatus, Outcome


class AnthropicBatchAPI(BatchAPI):
    def url(self, *parts: str) -> str:
        return "/".join([f"{self.provider.base_url}/v1/messages/batches", *parts])

    async def submit(self, requests: dict[str, dict]) -> str:
        body = {"requests": [{"custom_id": cid, "params": b} for cid, b in requests.items()]}
        data = await self.provider.call("POST", self.url(), body)
        return data["id"]

    async def status(self, batch_id: str) -> BatchStatus:
        data = await self.provider.call("GET", self.url(batch_id))
        counts = {k: int(v or 0) for k, v in (data.get("request_counts") or {}).items()}
        return BatchStatus(
            state=data.get("processing_status", "?"),
            ended=data.get("processing_status") == "ended",
            done=sum(v for k, v in counts.items() if k != "processing"),
            total=sum(counts.values()),
            detail=data,
        )

    async def results(self, status: BatchStatus) -> dict[str, Outcome]:
        raw = await self.provider.call("GET", self.url(status.detail["id"], "results"), raw=True)
        out = {}
        for line in raw.decode("utf-8", "replace").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            result = row.get("result") or {}
            if result.get("type") == "succeeded":
                out[row["custom_id"]] = Outcome(data=result.get("message"))
            elif result.get("type") == "errored":
                out[row["custom_id"]] = Outcome(error=str(result.get("error"))[:200])
            # canceled / expired: left out, so sent again in the next wave
        return out
