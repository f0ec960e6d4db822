"""Exact top-k over item factors split into shards scored in parallel, merged exactly.

A user's score of item ``i`` is ``[p_u, mu + b_u, 1] . [q_i, 1, b_i]``: the
model's prediction ``mu + b_u + b_i + p_u . q_i`` as one product against the
*augmented* item matrix (bias-only models have no ``p``/``q`` columns). The
item rows are cut into ``n_shards`` contiguous parts; each part is scored and
reduced to its own top ``k`` on a thread (NumPy's matrix product and
partition release the GIL), and the parts' winners are merged. Ranking is the
library's: highest score first, equal scores by the lower item code, so the
merge is exact and the sharded answer equals the unsharded one.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["Scorer", "reference_topk", "top_k"]


def top_k(scores: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ``(codes, scores)`` of one row, ``-inf`` scores left out.

    Highest score first, equal scores by the lower code, as the library ranks.
    ``codes`` label the entries of ``scores`` and must be increasing.

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.server import top_k
    >>> codes, scores = top_k(np.array([0.5, 2.0, -np.inf, 2.0, 1.0]), np.arange(5), 3)
    >>> codes.tolist(), scores.tolist()
    ([1, 3, 4], [2.0, 2.0, 1.0])
    """
    n = len(scores)
    if n > k:
        # The k-th best score t: everything above t is in; ties at t go by lower code.
        t = np.partition(scores, n - k)[n - k]
        above = np.flatnonzero(scores > t)
        tied = np.flatnonzero(scores == t)[: k - len(above)]
        pick = np.concatenate([above, tied])
        scores, codes = scores[pick], codes[pick]
    # -inf marks what may not be recommended; filtering the few winners beats the whole row
    ok = scores > -np.inf
    if not ok.all():
        scores, codes = scores[ok], codes[ok]
    order = np.lexsort((codes, -scores))
    return codes[order], scores[order]


def reference_topk(
    items: np.ndarray, user: np.ndarray, k: int, blocked: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Plain reference: score every item, sort all of them, keep the first ``k`` allowed.

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.server import reference_topk
    >>> items = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    >>> codes, _ = reference_topk(items, np.array([1.0, 0.5]), 2, np.array([False, False, True]))
    >>> codes.tolist()
    [0, 1]
    """
    scores = (items.astype(np.float64) @ user.astype(np.float64)).astype(np.float32)
    codes = np.arange(len(scores))
    order = sorted(codes[~blocked], key=lambda c: (-float(scores[c]), int(c)))[:k]
    out = np.asarray(order, dtype=np.int64)
    return out, scores[out]


class Scorer:
    """Top-k scoring of user vectors against augmented item rows, in ``n_shards`` parts.

    Parameters
    ----------
    items : numpy.ndarray
        ``(n_items, d)`` float32 augmented item rows.
    allowed : numpy.ndarray
        ``(n_items,)`` bool: items that may be recommended at all (seen in training).
    n_shards : int
        Contiguous parts scored in parallel; 1 scores in the calling thread.

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.server import Scorer
    >>> items = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    >>> user, ok = np.ones(4, np.float32), np.ones(100, bool)
    >>> with Scorer(items, ok, n_shards=3) as sharded, Scorer(items, ok) as one:
    ...     a = sharded.recommend(user, 5, seen=np.array([7]))[0]
    ...     b = one.recommend(user, 5, seen=np.array([7]))[0]
    >>> a.tolist() == b.tolist()
    True
    """

    def __init__(self, items: np.ndarray, allowed: np.ndarray, n_shards: int = 1) -> None:
        self.items = np.ascontiguousarray(items, dtype=np.float32)
        self.allowed = np.asarray(allowed, dtype=bool)
        n = self.items.shape[0]
        self.n_shards = max(1, min(int(n_shards), n))
        edges = np.linspace(0, n, self.n_shards + 1).round().astype(np.int64)
        self.edges = edges
        self.parts = [self.items[a:b] for a, b in itertools.pairwise(edges)]
        self.blocked = [~self.allowed[a:b] for a, b in itertools.pairwise(edges)]
        self.pool = (
            ThreadPoolExecutor(self.n_shards, thread_name_prefix="dmf-shard")
            if self.n_shards > 1
            else None
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def _shard(
        self, s: int, users: np.ndarray, seens: list[np.ndarray], k: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each user's top ``k`` within shard ``s``: one product for the whole batch."""
        a, b = int(self.edges[s]), int(self.edges[s + 1])
        scores = users @ self.parts[s].T
        scores[:, self.blocked[s]] = -np.inf
        codes = np.arange(a, b, dtype=np.int64)
        out = []
        for row, seen in zip(scores, seens, strict=True):
            lo, hi = np.searchsorted(seen, [a, b])
            row[seen[lo:hi] - a] = -np.inf
            out.append(top_k(row, codes, k))
        return out

    def recommend_many(
        self, users: np.ndarray, k: int, seens: list[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top-k ``(item codes, scores)`` of a batch of augmented user vectors.

        One matrix product per shard for the whole batch reads the item rows
        once, rather than once per user; ``seens[r]`` (sorted item codes) are
        left out for user ``r``.
        """
        users = np.ascontiguousarray(users, dtype=np.float32).reshape(-1, self.items.shape[1])
        seens = [np.asarray(x, dtype=np.int64) for x in seens]
        if self.pool is None:
            return self._shard(0, users, seens, k)
        futures = [
            self.pool.submit(self._shard, s, users, seens, k) for s in range(1, self.n_shards)
        ]
        parts = [self._shard(0, users, seens, k)] + [f.result() for f in futures]
        out = []
        for r in range(len(users)):
            codes = np.concatenate([p[r][0] for p in parts])
            scores = np.concatenate([p[r][1] for p in parts])
            order = np.argsort(codes, kind="stable")  # top_k breaks ties by position
            out.append(top_k(scores[order], codes[order], k))
        return out

    def recommend(
        self,
        user: np.ndarray,
        k: int,
        seen: np.ndarray,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(item codes, scores)`` for one augmented user vector.

        ``seen`` (sorted item codes) are left out; ``candidates`` (item codes)
        restrict the ranking to those items (scored directly, not sharded).
        """
        user = np.ascontiguousarray(user, dtype=np.float32)
        seen = np.asarray(seen, dtype=np.int64)
        if candidates is not None:
            cand = np.unique(np.asarray(candidates, dtype=np.int64))
            cand = cand[self.allowed[cand]]
            cand = cand[~np.isin(cand, seen, assume_unique=True)]
            return top_k(self.items[cand] @ user, cand, k)
        return self.recommend_many(user[None, :], k, [seen])[0]

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
