"""Which sessions one process of a collection run takes, and its share of each model's limits.

A run in W worker processes (vaar.collection.workers) gives each a shard: the sessions of a
model are dealt out by index, session i to worker i mod W', where W' = min(W, the model's
concurrency) so that every worker of a model can keep at least one session in flight; that
worker's share of the model's concurrency, requests and tokens per minute is its part of
them, so the run as a whole keeps every limit the study sets. The shards are disjoint: each
session is asked and written by exactly one process. A run in one process is Shard(0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int = 0  # this worker, 0 .. count - 1
    count: int = 1  # worker processes in the run

    def workers_of(self, concurrency: int) -> int:
        """W': how many workers share a model of this concurrency."""
        return max(1, min(self.count, concurrency))

    def owns(self, session_index: int, concurrency: int) -> bool:
        return session_index % self.workers_of(concurrency) == self.index

    def concurrency(self, concurrency: int) -> int:
        """This worker's part of a model's concurrency (0: it takes none of its sessions)."""
        n = self.workers_of(concurrency)
        if self.index >= n:
            return 0
        return concurrency // n + (self.index < concurrency % n)

    def fraction(self, concurrency: int) -> float:
        """This worker's part of a model's rate limits: its part of the concurrency."""
        return self.concurrency(concurrency) / concurrency
