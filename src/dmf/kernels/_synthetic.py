"""Kernels of the synthetic ratings generator (one call per generation chunk of users).

- :func:`sample_items`: for each user, ``counts[u]`` distinct items drawn by
  popularity (inverse CDF), rejecting repeats with a per-item stamp, then
  uniformly once a user has used up its budget of popularity draws (so a very
  active user always completes). Items come out sorted within each user.
- :func:`rating_values`: ``mean + b_u + b_i + U_u . V_i + noise``, rounded to
  half stars and clipped to [1, 5]; :func:`_reference_rating_values` is the
  dense numpy reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def sample_items(
    counts: np.ndarray, cdf: np.ndarray, seed32: int
) -> np.ndarray:  # pragma: no cover
    """Distinct items per user, concatenated in user order and sorted within each user.

    ``cdf`` is the cumulative item popularity (last value 1). The generator is
    numba's, seeded here, so a call's output depends only on its arguments.
    """
    # numba keeps one legacy-API generator per thread; seeding it here makes the call pure.
    np.random.seed(seed32)  # noqa: NPY002
    n_items = cdf.shape[0]
    total = 0
    for u in range(counts.shape[0]):
        total += counts[u]
    out = np.empty(total, dtype=np.int32)
    stamp = np.full(n_items, -1, dtype=np.int64)
    pos = 0
    for u in range(counts.shape[0]):
        k = counts[u]
        got = 0
        tries = 0
        budget = 4 * k + 64
        while got < k:
            if tries < budget:
                i = np.searchsorted(cdf, np.random.random(), side="right")  # noqa: NPY002
                if i >= n_items:
                    i = n_items - 1
            else:
                i = np.random.randint(0, n_items)  # noqa: NPY002
            tries += 1
            if stamp[i] != u:
                stamp[i] = u
                out[pos + got] = i
                got += 1
        out[pos : pos + k].sort()
        pos += k
    return out


@njit(nogil=True, cache=True)
def rating_values(
    rows: np.ndarray,
    cols: np.ndarray,
    mean: float,
    user_bias: np.ndarray,
    item_bias: np.ndarray,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    noise: np.ndarray,
) -> np.ndarray:  # pragma: no cover
    """Half-star ratings in [1, 5] for (local row, item) pairs of one chunk."""
    n = rows.shape[0]
    rank = user_factors.shape[1]
    out = np.empty(n, dtype=np.float32)
    for j in range(n):
        u = rows[j]
        i = cols[j]
        v = mean + user_bias[u] + item_bias[i] + noise[j]
        for f in range(rank):
            v += user_factors[u, f] * item_factors[i, f]
        v = np.round(2.0 * v) / 2.0
        if v < 1.0:
            v = 1.0
        elif v > 5.0:
            v = 5.0
        out[j] = v
    return out


def _reference_rating_values(
    rows: np.ndarray,
    cols: np.ndarray,
    mean: float,
    user_bias: np.ndarray,
    item_bias: np.ndarray,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    noise: np.ndarray,
) -> np.ndarray:
    """Dense reference of :func:`rating_values`: the full prediction matrix, then gather."""
    full = (
        mean
        + user_bias.astype(np.float64)[:, None]
        + item_bias.astype(np.float64)[None, :]
        + user_factors.astype(np.float64) @ item_factors.astype(np.float64).T
    )
    v = full[rows, cols] + noise
    return np.clip(np.round(2.0 * v) / 2.0, 1.0, 5.0).astype(np.float32)
