"""Live counts per model, shown as a `rich` table on a terminal and as plain lines otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field

from vaar.collection.providers import ProviderHooks


@dataclass
class ModelStats(ProviderHooks):
    model: str
    sessions: int = 0  # planned
    done: int = 0  # finished (including those finished in earlier runs)
    failed: int = 0
    turns: int = 0  # asked in this run
    requests: int = 0
    cached: int = 0
    retries: int = 0
    rate_limited: int = 0
    invalid: int = 0
    refused: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    started: float = field(default_factory=time.monotonic)
    done_at_start: int = 0
    # batch mode (vaar.collection.batch); batch_wave 0: live
    batch_wave: int = 0  # waves sent so far
    batch_waves_planned: int = 0  # turns per session: the waves a run needs without re-asks
    batch_state: str = ""  # the latest batch's provider status, requests done/total
    batches: int = 0  # submitted by this run
    batch_resubmitted: int = 0  # requests sent again (errored, expired, cancelled)
    batch_seconds: float = 0.0  # spent waiting for batches

    # what a worker process reports (vaar.collection.workers); the parent's are their sums
    COUNTS = (
        "sessions", "done", "failed", "done_at_start", "turns", "requests", "cached", "retries",
        "rate_limited", "invalid", "refused", "prompt_tokens", "completion_tokens", "cost",
    )  # fmt: skip

    def counts(self) -> tuple:
        return tuple(getattr(self, name) for name in self.COUNTS)

    def set_sums(self, parts: list[tuple]) -> None:
        """Become the sum of the workers' counts (each as counts() gave it)."""
        for name, *values in zip(self.COUNTS, *parts, strict=True):
            setattr(self, name, sum(values))

    def retry(self, reason: str) -> None:
        self.retries += 1
        if reason == "429":
            self.rate_limited += 1

    def eta(self) -> float | None:
        if self.batch_wave:  # the mean wave so far, times the waves still to come
            left = max(0, self.batch_waves_planned - self.batch_wave)
            return self.batch_seconds / self.batch_wave * left
        finished_now = self.done + self.failed - self.done_at_start
        left = self.sessions - self.done - self.failed
        if left <= 0:
            return 0.0
        if finished_now <= 0:
            return None
        return (time.monotonic() - self.started) / finished_now * left

    def line(self) -> str:
        eta = self.eta()
        return (
            f"{self.model}: sessions {self.done}/{self.sessions} done, {self.failed} failed; "
            f"turns {self.turns}, retries {self.retries} (429: {self.rate_limited}), "
            f"invalid {self.invalid}, refused {self.refused}, "
            f"tokens {self.prompt_tokens + self.completion_tokens}"
            + (f", cost {self.cost:.4f}" if self.cost else "")
            + (f", {self.wave()}" if self.batch_wave else "")
            + (f", eta {eta:.0f}s" if eta is not None else "")
        )

    def wave(self) -> str:
        return (
            f"wave {self.batch_wave}/{self.batch_waves_planned} ({self.batch_state}), "
            f"{self.batches} batches, {self.batch_resubmitted} resubmitted"
        )


def _table(stats: list[ModelStats]):
    from rich.table import Table

    table = Table(title="vaar collect")
    for col in ("model", "sessions", "failed", "turns", "retries", "429s", "invalid", "tokens"):
        table.add_column(col, justify="left" if col == "model" else "right")
    table.add_column("ETA", justify="right")
    if any(s.batch_wave for s in stats):
        table.add_column("batch")
    for s in stats:
        eta = s.eta()
        table.add_row(
            s.model,
            f"{s.done}/{s.sessions}",
            str(s.failed),
            str(s.turns),
            str(s.retries),
            str(s.rate_limited),
            str(s.invalid + s.refused),
            str(s.prompt_tokens + s.completion_tokens),
            "-" if eta is None else f"{eta:.0f}s",
            *([s.wave() if s.batch_wave else "live"] if any(x.batch_wave for x in stats) else []),
        )
    return table


async def show_progress(stats: list[ModelStats], stop: asyncio.Event, interval: float = 5.0):
    """Run until `stop` is set: a live table on a terminal, else a line per model every
    `interval` seconds (and once at the end), so logs of long runs stay readable."""
    if sys.stdout.isatty():
        from rich.live import Live

        with Live(_table(stats), refresh_per_second=4, transient=False) as live:
            while not stop.is_set():
                live.update(_table(stats))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)
            live.update(_table(stats))
        return
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            for s in stats:
                print(s.line(), flush=True)
    for s in stats:
        print(s.line(), flush=True)
