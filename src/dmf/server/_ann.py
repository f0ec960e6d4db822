"""Approximate top-k for large catalogues: an inverted-file index (faiss IVF-Flat).

The augmented item rows (see :mod:`._scoring`) are clustered into ``nlist``
lists by k-means on a sample; a query scores the ``nprobe`` lists whose
centroids have the highest inner product with it, exactly, and nothing else.
So the answer's scores are exact model scores, but an item in a list not
probed is missed: recall@10 against the exact answer is what to measure
(``tools/bench/ann_index.py``). Items a user already has are asked for on
top of ``k`` and filtered out. Needs the optional ``ann`` extra (faiss-cpu).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from dmf._errors import ParameterError
from dmf.server._scoring import Scorer, top_k

__all__ = ["AnnScorer", "default_nlist"]

#: Training rows per list for the k-means (faiss asks for at least 39).
_TRAIN_PER_LIST = 40


def default_nlist(n: int) -> int:
    """Lists for ``n`` items: about ``2 sqrt(n)``, so a probe scans a few thousand rows."""
    return max(1, min(int(2 * math.sqrt(n)), n // _TRAIN_PER_LIST))


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:
        raise ParameterError(
            f"--index ann needs the 'ann' extra: pip install 'dask-mf[ann]' (faiss-cpu) ({e})"
        ) from e
    return faiss


class AnnScorer(Scorer):
    """:class:`Scorer` whose full-catalogue top-k comes from an IVF-Flat index.

    Parameters
    ----------
    items, allowed
        As for :class:`Scorer` (only allowed items are indexed).
    nlist : int, optional
        Inverted lists (default :func:`default_nlist`).
    nprobe : int
        Lists scanned per query: more is slower and closer to exact.
    seed : int
        Seed of the training sample and of faiss' k-means.

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.server._ann import AnnScorer
    >>> items = np.random.default_rng(0).normal(size=(2000, 8)).astype(np.float32)
    >>> ann = AnnScorer(items, np.ones(2000, bool), nlist=10, nprobe=10)  # every list: exact
    >>> exact = Scorer(items, np.ones(2000, bool))
    >>> user = np.ones(8, np.float32)
    >>> ann.recommend(user, 5, np.array([3]))[0].tolist() == exact.recommend(
    ...     user, 5, np.array([3]))[0].tolist()
    True
    """

    def __init__(
        self,
        items: np.ndarray,
        allowed: np.ndarray,
        *,
        nlist: int | None = None,
        nprobe: int = 32,
        seed: int = 0,
    ) -> None:
        faiss = _faiss()
        super().__init__(items, allowed, 1)
        t0 = time.perf_counter()
        self.codes = np.flatnonzero(self.allowed).astype(np.int64)
        rows = self.items if len(self.codes) == len(self.items) else self.items[self.codes]
        n, d = rows.shape
        self.nlist = int(nlist) if nlist is not None else default_nlist(n)
        if not 1 <= self.nlist <= max(1, n):
            raise ParameterError(f"nlist={self.nlist} is not allowed: it must lie in [1, {n}]")
        self.nprobe = max(1, min(int(nprobe), self.nlist))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, self.nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        sample = min(n, self.nlist * _TRAIN_PER_LIST)
        pick = np.random.default_rng(seed).choice(n, sample, replace=False) if sample < n else None
        index.train(rows if pick is None else rows[np.sort(pick)])
        index.add(rows)
        index.nprobe = self.nprobe
        self.index, self._quantizer = index, quantizer
        self.build_seconds = time.perf_counter() - t0
        #: Bytes the index holds: the rows, their ids and the centroids.
        self.index_bytes = int(rows.nbytes + 8 * n + 4 * self.nlist * d)

    def recommend_many(
        self, users: np.ndarray, k: int, seens: list[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Approximate top-k ``(item codes, scores)`` of a batch; ``seens[r]`` left out."""
        users = np.ascontiguousarray(users, dtype=np.float32).reshape(-1, self.items.shape[1])
        seens = [np.asarray(x, dtype=np.int64) for x in seens]
        want = min(len(self.codes), k + max((len(s) for s in seens), default=0))
        scores, pos = self.index.search(users, want)
        out = []
        for row_s, row_p, seen in zip(scores, pos, seens, strict=True):
            found = row_p >= 0
            codes, s = self.codes[row_p[found]], row_s[found]
            if len(seen):
                keep = ~np.isin(codes, seen)
                codes, s = codes[keep], s[keep]
            order = np.argsort(codes, kind="stable")  # top_k breaks ties by position
            out.append(top_k(s[order], codes[order], k))
        return out
