"""Requests scored together: concurrent ``/recommend`` calls share one pass over the items.

Scoring one user is a matrix-vector product over every item row, bound by
memory bandwidth; a batch of users is a matrix-matrix product that reads the
rows once. Requests that arrive while a batch is being scored (on a worker
thread, so the event loop keeps accepting them) form the next batch. Nothing
waits for a batch to fill: a lone request is scored at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import numpy as np

from dmf.server._scoring import Scorer

__all__ = ["Batcher"]

#: Users scored in one product (bounds the score block: rows x items float32).
MAX_BATCH = 64


class Batcher:
    """Collects ``(user vector, seen, k)`` requests and scores them in batches."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.pending: list[tuple[np.ndarray, np.ndarray, int, asyncio.Future]] = []
        self.running = False
        self.task: asyncio.Future | None = None
        self.batches = 0
        self.requests = 0

    async def top_k(self, vec: np.ndarray, seen: np.ndarray, k: int) -> tuple[Any, Any]:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((vec, seen, k, future))
        if not self.running:
            self.running = True
            self.task = asyncio.ensure_future(self._drain())  # kept: tasks are weakly held
        return await future

    def _score(self, batch: list) -> list[tuple[np.ndarray, np.ndarray]]:
        users = np.stack([b[0] for b in batch])
        k = max(b[2] for b in batch)
        out = self.scorer.recommend_many(users, k, [b[1] for b in batch])
        # a longer top-k starts with the shorter one: the ranking is a total order
        return [(c[: b[2]], s[: b[2]]) for (c, s), b in zip(out, batch, strict=True)]

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                self.batches += 1
                self.requests += len(batch)
                try:
                    results = await anyio.to_thread.run_sync(self._score, batch)
                except Exception as e:  # handed to every waiting request
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                for (*_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self.running = False
